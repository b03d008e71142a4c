"""Issue 24: ``--overwrite`` removes exactly what the tool wrote (its manifest) and refuses anything else;
``--resume`` refuses a folder whose config, checkpoints and trace parts disagree; odd paths get one line. Every
case here was a data loss, a silently wrong trace or a traceback on the code before the manifest."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import onlinepg as op
from onlinepg import outdir
from onlinepg.cli import main as cli
from onlinepg.engine import run
from onlinepg.trace import read_table

TINY = {"task": {"d": 4, "k": 4, "N": 3, "centres": 4}, "base": {"kind": "zero"}, "algo": {"name": "pg"},
        "run": {"rounds": 40, "eval_every": 10, "checkpoint_every": 10, "keep_checkpoints": 0, "progress": False}}
CLI = [sys.executable, "-m", "onlinepg.cli"]


def snapshot(root):
    """Every path under ``root`` (links not followed) with its bytes or link target: what 'nothing touched' means."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            out[rel] = ("link", os.readlink(p)) if os.path.islink(p) else (
                "dir" if os.path.isdir(p) else open(p, "rb").read())
    return out


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished run (four checkpoints, several trace segments), copied by the tests that tamper with it."""
    out = tmp_path_factory.mktemp("done") / "run"
    run(TINY, out)
    return out


@pytest.fixture
def copy(done, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(done, dst, symlinks=True)
    return dst


def refused(argv, capsys, *fragments):
    """The CLI refuses ``argv`` with exit 2 and one ``onlinepg: error:`` line holding every fragment."""
    code = cli([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onlinepg: error: "), err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


# -- §1: --overwrite deleted files it never wrote ----------------------------------------------------------

def test_plot_overwrite_keeps_a_users_photos(done, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.png").write_bytes(b"\x89PNG mine")
    (photos / "cat.png").write_bytes(b"\x89PNG mine too")
    before = snapshot(photos)
    refused(["plot", done, "--out", photos, "--overwrite"], capsys, "not a figures folder written by onlinepg")
    assert snapshot(photos) == before


def test_sweep_overwrite_keeps_a_data_folder(tmp_path, capsys):
    (tmp_path / "sweep.toml").write_text('[sweep]\nseeds = 1\n[grid]\n"task.N" = [1]\n')
    f = tmp_path / "F"
    (f / "data").mkdir(parents=True)
    (f / "data" / "big.csv").write_text("1,2,3\n")
    (f / "sweep.json").write_text("{}")           # looked like a sweep folder to the old layout rule
    before = snapshot(f)
    refused(["sweep", tmp_path / "sweep.toml", "--out", f, "--overwrite"], capsys, "not a sweep folder")
    assert snapshot(f) == before


def test_experiment_overwrite_keeps_a_papers_figures(tmp_path, capsys):
    paper = tmp_path / "paper"
    (paper / "figures").mkdir(parents=True)
    (paper / "figures" / "fig_final.png").write_bytes(b"\x89PNG final")
    (paper / "results.md").write_text("# my notes\n")  # looked like an experiment folder to the old rule
    before = snapshot(paper)
    refused(["experiment", "sgd-lr", "--scale", "small", "--out", paper, "--overwrite"], capsys,
            "not an experiment folder")
    assert snapshot(paper) == before


@pytest.mark.parametrize("content", [{"model.bin": b"weights of another tool"},
                                     {outdir.LOCK: b"onlinepg run\n", "thesis.tex": b"chapter 1"},
                                     {outdir.LOCK: b"onlinepg run\n", "config.toml": b"[task]\n",
                                      "rounds/part-000000000000-000000.parquet": b"not mine"}])
def test_run_overwrite_keeps_a_look_alike_folder(content, tmp_path, capsys):
    f = tmp_path / "F"
    for name, data in content.items():
        (f / name).parent.mkdir(parents=True, exist_ok=True)
        (f / name).write_bytes(data)
    before = snapshot(f)
    refused(["run", "--out", f, "--overwrite", "--no-progress"], capsys, "not a run folder written by onlinepg")
    assert snapshot(f) == before


@pytest.mark.parametrize("where", ["notes.txt", "rounds/mine.csv", "checkpoints/ckpt-9.npz", "empty_dir/"])
def test_a_run_folder_with_a_users_file_inside_is_not_replaced(where, copy, capsys):
    path = copy / where.rstrip("/")
    if where.endswith("/"):
        path.mkdir()
    else:
        path.write_text("mine")
    before = snapshot(copy)
    refused(["run", "--out", copy, "--overwrite", "--no-progress"], capsys, "holds what onlinepg did not write",
            where.rstrip("/"))
    assert snapshot(copy) == before


@pytest.mark.parametrize("target", ["dir", "file"])
def test_a_symlink_inside_is_never_followed(target, copy, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    os.symlink(outside if target == "dir" else outside / "keep.txt", copy / "eval" / "link")
    before, before_out = snapshot(copy), snapshot(outside)
    refused(["run", "--out", copy, "--overwrite", "--no-progress"], capsys, "eval/link (a symbolic link)")
    assert snapshot(copy) == before and snapshot(outside) == before_out


def test_root_home_and_the_current_folder_are_never_replaced(done, tmp_path, monkeypatch, capsys):
    """Even when the folder is a valid run folder: a slip of --out must not empty a home or working folder."""
    home = tmp_path / "home"
    shutil.copytree(done, home)
    monkeypatch.setenv("HOME", str(home))
    before = snapshot(home)
    refused(["run", "--out", home, "--overwrite", "--no-progress"], capsys, "your home folder")
    work = tmp_path / "work"
    shutil.copytree(done, work)
    before_work = snapshot(work)
    monkeypatch.chdir(work)
    refused(["run", "--out", ".", "--overwrite", "--no-progress"], capsys, "the current folder")
    monkeypatch.chdir(work / "eval")
    refused(["run", "--out", work, "--overwrite", "--no-progress"], capsys, "a folder holding the current folder")
    assert snapshot(home) == before and snapshot(work) == before_work
    root = set(os.listdir("/"))
    refused(["run", "--out", "/", "--overwrite", "--no-progress"], capsys, "the root folder")
    assert set(os.listdir("/")) == root         # not even a lock file came and went... and none stayed


def test_a_refused_overwrite_creates_no_lock_file(tmp_path, capsys):
    f = tmp_path / "F"
    f.mkdir()
    (f / "thesis.tex").write_text("mine")
    refused(["run", "--out", f, "--overwrite", "--no-progress"], capsys, "not a run folder")
    refused(["run", "--out", f, "--no-progress"], capsys, "is not empty")
    assert sorted(os.listdir(f)) == ["thesis.tex"]


def test_overwrite_removes_exactly_what_the_manifest_lists(copy, tmp_path):
    """A run killed mid-write leaves listed files that do not exist and a temporary sibling: still the tool's."""
    (copy / "eval" / ".part-000000000030-000000.parquet.tmp").write_bytes(b"half a part")
    (copy / "checkpoints" / "ckpt-000000000010.npz").unlink()
    s = run(TINY, copy, overwrite=True, sets=["run.seed=5"])
    assert s["seed"] == 5 and not (copy / "eval" / ".part-000000000030-000000.parquet.tmp").exists()
    assert len(list((copy / "checkpoints").glob("*.npz"))) == 4
    # the new manifest lists only the new run's files
    kind, entries = outdir.read_manifest(copy)
    assert kind == "run" and {e["f"] for e in entries if "f" in e} >= {"config.toml", "summary.json", "base.npz"}


def test_overwrite_without_the_lock_file_or_with_a_torn_last_line(copy):
    (copy / outdir.LOCK).unlink()
    with open(copy / outdir.MANIFEST, "a") as fh:
        fh.write('{"f": "rounds/part-0000')                  # a kill in the middle of a line
    assert run(TINY, copy, overwrite=True)["rounds"] == 40


@pytest.mark.parametrize("damage", ["missing", "garbage", "other kind", "escapes", "middle line"])
def test_a_missing_or_damaged_manifest_refuses_overwrite(damage, copy, capsys):
    m = copy / outdir.MANIFEST
    text = m.read_text()
    if damage == "missing":
        m.unlink()
    elif damage == "garbage":
        m.write_text("hello\n")
    elif damage == "other kind":
        m.write_text(text.replace('"kind": "run"', '"kind": "experiment"', 1))
    elif damage == "escapes":
        m.write_text(text + '{"f": "../../etc/passwd"}\n')
    else:
        lines = text.splitlines(keepends=True)
        m.write_text("".join(lines[:2] + ["not json\n"] + lines[2:]))
    before = snapshot(copy)
    refused(["run", "--out", copy, "--overwrite", "--no-progress"], capsys, "not a run folder written by onlinepg")
    assert snapshot(copy) == before


def test_nested_claims_go_with_their_folder(done, tmp_path, capsys):
    """A run's figures (a nested claim), an experiment's runs: replaced with the outer folder; a user's file in
    a nested folder refuses the outer one too."""
    r = tmp_path / "run"
    shutil.copytree(done, r)
    assert cli(["plot", str(r), "--contexts", "20"]) == 0            # RUN/figures, claimed inside the run
    assert cli(["plot", str(r), "--contexts", "20"]) == 0            # ... and replaced by the next plot
    pngs = sorted(p.name for p in (r / "figures").glob("*.png"))
    assert pngs and {"c": "figures"} in outdir.read_manifest(r)[1]
    (r / "figures" / "mine.png").write_bytes(b"mine")
    before = snapshot(r)
    refused(["run", "--out", r, "--overwrite", "--no-progress"], capsys, "figures/mine.png")
    refused(["plot", r, "--contexts", "20"], capsys, "mine.png")
    assert snapshot(r) == before
    (r / "figures" / "mine.png").unlink()
    capsys.readouterr()
    assert run(TINY, r, overwrite=True)["rounds"] == 40
    assert not (r / "figures").exists()


def test_an_lq_table_beside_a_weights_file_replaces_only_its_own(done, tmp_path, capsys):
    folder = tmp_path / "w"
    folder.mkdir()
    shutil.copy(done / "base.npz", folder / "weights.npz")
    args = ["lq", folder / "weights.npz", "--config", done / "config.toml", "--contexts", "30"]
    assert cli([str(a) for a in args]) == 0
    assert cli([str(a) for a in args]) == 0                     # its own earlier table: replaced
    (folder / "lq.parquet").write_text("my own table")
    refused(args, capsys, "lq.parquet exists and onlinepg did not write it")
    assert (folder / "lq.parquet").read_text() == "my own table"


def test_overwrite_refuses_a_folder_it_cannot_empty(copy, monkeypatch, capsys):
    """A folder whose files cannot be removed (permission denied) is refused before anything is removed; a
    removal that fails midway is one line too, and the manifest still lets a later --overwrite finish."""
    real_access = os.access
    monkeypatch.setattr(outdir.os, "access",
                        lambda p, mode: False if str(p).endswith("rounds") else real_access(p, mode))
    before = snapshot(copy)
    refused(["run", "--out", copy, "--overwrite", "--no-progress"], capsys, "rounds/part-", "permission denied",
            "nothing was removed")
    assert snapshot(copy) == before
    monkeypatch.setattr(outdir.os, "access", real_access)
    real_unlink = os.unlink

    def unlink(p, *a, **k):
        if "part-000000000020" in str(p):
            raise PermissionError(13, "Permission denied", str(p))
        return real_unlink(p, *a, **k)
    monkeypatch.setattr(outdir.os, "unlink", unlink)
    refused(["run", "--out", copy, "--overwrite", "--no-progress"], capsys, "cannot remove", "Permission denied")
    monkeypatch.setattr(outdir.os, "unlink", real_unlink)
    assert run(TINY, copy, overwrite=True)["rounds"] == 40


def test_a_sweep_cell_rerun_replaces_the_sweeps_old_record(tmp_path):
    """The driver's cell.json (the sweep's file) goes before a cell runs again; the run replaces only its own."""
    from onlinepg.sweep import run_sweep
    sweep = {"sweep": {"seeds": 1}, "fixed": {"run.rounds": 20, "run.eval_every": 10, "task.N": 2},
             "grid": {"task.k": [3, 4]}}
    out = tmp_path / "s"
    assert run_sweep(sweep, out, backend="local", workers=1, progress=False)["completed"] == 2
    assert run_sweep(sweep, out, backend="local", workers=1, progress=False, overwrite=True)["completed"] == 2
    cell = next(out.rglob("cell.json")).parent
    (cell / "summary.json").unlink()                            # an unfinished cell: rerun on --resume
    r = run_sweep(sweep, out, backend="local", workers=1, progress=False, resume=True)
    assert r["completed"] == 2 and r["skipped"] == 1
    (cell / "mine.txt").write_text("mine")
    with pytest.raises(op.ConfigError, match="mine.txt"):
        run_sweep(sweep, out, backend="local", workers=1, progress=False, overwrite=True)


def test_resume_never_replaces_a_file_it_did_not_write(tmp_path):
    """Whatever the kind: a resumed command replaces the files its manifest lists, and refuses any other."""
    e = tmp_path / "e"
    with outdir.OutDir(e, "experiment") as claim:
        claim.replace()
        outdir.write_text(e / "checks.json", "{}\n")           # killed here, before results.md
    (e / "results.md").write_text("mine")
    with outdir.OutDir(e, "experiment", resume=True) as claim:
        claim.replace()
        outdir.write_text(e / "checks.json", "[]\n")           # its own: replaced
        with pytest.raises(op.ConfigError, match="results.md exists and onlinepg did not write it"):
            outdir.write_text(e / "results.md", "# new\n")
    assert (e / "results.md").read_text() == "mine" and (e / "checks.json").read_text() == "[]\n"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.md").write_text("mine")
    with pytest.raises(op.ConfigError, match="no valid experiment manifest"):
        with outdir.OutDir(mine, "experiment", resume=True):
            pass
    assert os.listdir(mine) == ["results.md"]


def test_a_resumed_command_rewrites_what_it_wrote_itself(tmp_path):
    """A sweep resumed into a new folder writes runs.parquet again and again (its own file each time)."""
    from onlinepg.sweep import run_sweep
    sweep = {"sweep": {"seeds": 1}, "fixed": {"run.rounds": 20, "run.eval_every": 10, "task.N": 2},
             "grid": {"task.k": [3]}}
    assert run_sweep(sweep, tmp_path / "s", backend="local", workers=1, progress=False, resume=True)["completed"] == 1
    with outdir.OutDir(tmp_path / "e", "experiment", resume=True) as claim:
        claim.replace()
        outdir.write_text(tmp_path / "e" / "results.md", "# first\n")
        outdir.write_text(tmp_path / "e" / "results.md", "# second\n")
    assert (tmp_path / "e" / "results.md").read_text() == "# second\n"


# -- §2: --resume accepted folders it should refuse ------------------------------------------------------

def interrupted(copy, at):
    """``copy`` as a run killed just after its checkpoint at round ``at``: later checkpoints never written."""
    for p in (copy / "checkpoints").glob("ckpt-*.npz"):
        if int(p.stem.split("-")[1]) > at:
            p.unlink()
    (copy / "summary.json").unlink()
    return copy


def test_an_interrupted_run_resumes_to_the_same_trace(done, copy):
    run(None, interrupted(copy, 20), resume=True)
    for name in ("rounds", "eval", "tracked"):
        assert read_table(copy / name).equals(read_table(done / name)), name


def test_resume_refuses_a_checkpoint_of_another_config(done, copy, tmp_path, capsys):
    other = tmp_path / "other"
    run(TINY, other, sets=["run.seed=9"])
    interrupted(copy, 20)
    shutil.copy(other / "checkpoints" / "ckpt-000000000020.npz", copy / "checkpoints" / "ckpt-000000000020.npz")
    before = snapshot(copy)
    refused(["run", "--out", copy, "--resume", "--no-progress"], capsys, "ckpt-000000000020.npz",
            "another config")
    assert snapshot(copy) == before
    shutil.copy(other / "checkpoints" / "ckpt-000000000030.npz", copy / "checkpoints" / "ckpt-000000000025.npz")
    refused(["run", "--out", copy, "--resume", "--no-progress"], capsys, "checkpoints/ckpt-000000000025.npz",
            "not a file this run wrote")


def test_resume_refuses_an_edited_config(copy, capsys):
    interrupted(copy, 20)
    cfg = copy / "config.toml"
    cfg.write_text(cfg.read_text().replace("seed = 0", "seed = 3", 1))
    assert "seed = 3" in cfg.read_text()
    before = snapshot(copy)
    refused(["run", "--out", copy, "--resume", "--no-progress"], capsys, "another config",
            "was it edited")
    assert snapshot(copy) == before


@pytest.mark.parametrize("tamper, message", [("truncate", "is unreadable"), ("delete", "was deleted"),
                                             ("rows", "rows where")])
def test_resume_refuses_damaged_earlier_parts(tamper, message, copy, capsys):
    interrupted(copy, 30)
    part = sorted((copy / "rounds").glob("part-000000000010-*.parquet"))[0]
    if tamper == "truncate":
        part.write_bytes(part.read_bytes()[:200])
    elif tamper == "delete":
        part.unlink()
    else:                                # a whole Parquet file, but not the one written there
        shutil.copy(sorted((copy / "eval").glob("part-000000000010-*.parquet"))[0], part)
    before = snapshot(copy)
    refused(["run", "--out", copy, "--resume", "--no-progress"], capsys, f"rounds/{part.name}", message)
    assert snapshot(copy) == before


@pytest.mark.parametrize("stray", ["eval/part-old.parquet", "rounds/notes.parquet", "tracked/x"])
def test_resume_refuses_a_stray_file_in_one_line(stray, copy, capsys):
    interrupted(copy, 20)
    (copy / stray).write_bytes(b"stray")
    before = snapshot(copy)
    refused(["run", "--out", copy, "--resume", "--no-progress"], capsys, stray, "stray file")
    assert snapshot(copy) == before


def test_resume_refuses_a_folder_without_a_manifest(copy, capsys):
    (copy / outdir.MANIFEST).unlink()
    refused(["run", "--out", copy, "--resume", "--no-progress"], capsys, "no valid run manifest")


def test_resume_refuses_another_kind_of_folder(tmp_path, capsys):
    e = tmp_path / "e"
    e.mkdir()
    (e / outdir.MANIFEST).write_text(json.dumps({"onlinepg": "manifest", "version": 1, "kind": "lq"}) + "\n")
    (e / "config.toml").write_text((tmp_path / "x").as_posix())
    refused(["run", "--out", e, "--resume", "--no-progress"], capsys)


# -- §3: odd paths are one line ----------------------------------------------------------------------------

def test_a_name_longer_than_the_os_allows_is_one_line(tmp_path, capsys):
    long = tmp_path / ("x" * 300)
    refused(["run", "--out", long, "--no-progress"], capsys, "300 bytes long", "at most 255")
    deep = tmp_path / "/".join(["d" * 200] * 21)
    refused(["run", "--out", deep, "--no-progress"], capsys, "choose a shorter path")
    assert os.listdir(tmp_path) == []


def test_refusals_are_one_line_from_the_command_line_too(copy):
    """The installed command's own process: no traceback for a stray file or a nested TOML."""
    (copy / "eval" / "part-old.parquet").write_bytes(b"stray")
    res = subprocess.run(CLI + ["run", "--out", str(copy), "--resume", "--no-progress"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "stray file" in res.stderr, res.stderr
    assert np.load(sorted((copy / "checkpoints").glob("*.npz"))[-1])["round"] == 40
