"""The reliability defects of issue 10 (§3 CLI consistency, §4 defects 1–9), one test or more each; every test
here failed on the code before the fix. The bad-input cases (defects 5, 6, 8, 9 and the refused-config half of
7) are in test_bad_input.py."""
import argparse
import errno
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import onlinepg as op
from onlinepg import outdir, trace
from onlinepg.cli import main as cli
from onlinepg.errors import RunError
from onlinepg.engine import run
from onlinepg.trace import read_table

TINY = {"task": {"d": 4, "k": 4, "N": 3, "centres": 4}, "base": {"kind": "zero"}, "algo": {"name": "pg"},
        "run": {"rounds": 20, "eval_every": 10, "progress": False}}
# N = 1 bandit: long enough in rounds to still be running when another process looks at it
LONG = {"task": {"d": 8, "k": 4, "N": 1, "contexts": "rademacher"}, "base": {"kind": "zero"},
        "algo": {"name": "pg"}, "run": {"rounds": 50_000_000, "eval_every": 100_000, "checkpoint_every": 100_000,
                                        "trace_every": 1000, "progress": False}}
CLI = [sys.executable, "-m", "onlinepg.cli"]


def cfg(**run_keys):
    c = json.loads(json.dumps(TINY))
    c["run"].update(run_keys)
    return c


def same_traces(a, b):
    for name in ("rounds", "eval", "tracked"):
        ta, tb = read_table(a / name), read_table(b / name)
        assert (ta is None) == (tb is None), name
        assert ta is None or ta.equals(tb), name
    wa = np.load(sorted((a / "checkpoints").glob("*.npz"))[-1])["w"]
    wb = np.load(sorted((b / "checkpoints").glob("*.npz"))[-1])["w"]
    assert np.array_equal(wa, wb)


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- defect 1: --overwrite deletes only a run folder ----------------------------------------------------------

@pytest.mark.parametrize("content", [["ch1.tex"], ["figures/fig1.png"], ["config.toml"], ["runs/notes.md"],
                                     ["lq.parquet"]])
def test_overwrite_refuses_a_folder_that_is_not_a_run(content, tmp_path):
    thesis = tmp_path / "thesis"
    for name in content:
        (thesis / name).parent.mkdir(parents=True, exist_ok=True)
        (thesis / name).write_text("precious")
    before = files(thesis)
    with pytest.raises(op.ConfigError, match="not a run folder"):
        run(TINY, thesis, overwrite=True)
    assert files(thesis) == before and all((thesis / n).read_text() == "precious" for n in content)


def test_overwrite_replaces_a_run_folder_whose_lock_file_is_gone(tmp_path):
    out = tmp_path / "r"
    run(cfg(seed=1), out)
    (out / outdir.LOCK).unlink()              # the manifest, not the lock file, says whose folder it is
    s = run(cfg(seed=2), out, overwrite=True)
    assert s["seed"] == 2 and "seed = 2" in (out / "config.toml").read_text()
    assert len(list((out / "eval").glob("*.parquet"))) == 1


# -- defect 2: validate everything before replacing the old run ----------------------------------------------

@pytest.mark.parametrize("sets", [["base.kind=load", "base.path=missing.npz"], ["algo.lr=-1"],
                                  ["task.test_contexts=1000000000000"]])
def test_a_refused_overwrite_keeps_the_old_run(sets, tmp_path):
    out = tmp_path / "r"
    run(TINY, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(op.ConfigError):
        run(TINY, out, overwrite=True, sets=sets)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# -- defect 3: flush by size, honour checkpoint_every ----------------------------------------------------------

def test_traces_flush_by_size_and_stay_identical(tmp_path, monkeypatch):
    """eval_every = checkpoint = rounds (one segment): with a small flush size the rows still leave memory as
    they come (several parts), and the rows are identical to an unsplit run's, across a resume too."""
    sets = ["run.rounds=300", "run.eval_every=300", "run.chunk=7", "run.keep_checkpoints=0"]
    run(TINY, tmp_path / "whole", sets=sets)
    assert len(list((tmp_path / "whole" / "rounds").glob("*.parquet"))) == 1
    monkeypatch.setattr(trace, "FLUSH_BYTES", 2000)       # ~18 trace rows per part
    run(TINY, tmp_path / "split", sets=sets)
    parts = sorted((tmp_path / "split" / "rounds").glob("*.parquet"))
    assert len(parts) >= 10
    assert all(pq.read_metadata(p).num_rows < 300 for p in parts)
    same_traces(tmp_path / "whole", tmp_path / "split")
    # resume from a mid-run checkpoint in a run with size flushes: parts after it are rewritten, not duplicated
    sets2 = ["run.rounds=300", "run.eval_every=100", "run.checkpoint_every=150", "run.keep_checkpoints=0",
             "run.chunk=11"]
    run(TINY, tmp_path / "ref", sets=sets2)
    cut = tmp_path / "cut"
    run(TINY, cut, sets=sets2)
    for p in (cut / "checkpoints").glob("*.npz"):
        if int(p.stem.split("-")[1]) > 150:
            p.unlink()
    (cut / "summary.json").unlink()
    monkeypatch.setattr(trace, "FLUSH_BYTES", 3000)
    assert run(None, cut, resume=True)["resumed_from"] == 150
    same_traces(tmp_path / "ref", cut)


def test_parts_are_written_before_the_segment_ends(tmp_path, monkeypatch):
    """A killed run keeps what was flushed: parts exist while the (single) segment is still running."""
    monkeypatch.setattr(trace, "FLUSH_BYTES", 4000)
    seen = []
    real = trace.PartWriter.flush

    def spy(self):
        seen.append((self.folder.name, len(list(self.folder.glob("*.parquet")))))
        return real(self)
    monkeypatch.setattr(trace.PartWriter, "flush", spy)
    run(TINY, tmp_path / "r", sets=["run.rounds=200", "run.eval_every=200", "run.chunk=5"])
    rounds_flushes = [n for name, n in seen if name == "rounds"]
    assert len(rounds_flushes) > 3 and rounds_flushes[:3] == [0, 1, 2]     # flushed by size, mid-segment


def test_checkpoint_every_is_honoured_exactly_and_resume_is_identical(tmp_path):
    sets = ["run.rounds=200", "run.eval_every=100", "run.checkpoint_every=30", "run.keep_checkpoints=0"]
    run(TINY, tmp_path / "ref", sets=sets)
    kept = sorted(int(p.stem.split("-")[1]) for p in (tmp_path / "ref" / "checkpoints").glob("*.npz"))
    assert kept == [30, 60, 90, 120, 150, 180, 200]
    cut = tmp_path / "cut"
    run(TINY, cut, sets=sets)
    for p in (cut / "checkpoints").glob("*.npz"):
        if int(p.stem.split("-")[1]) > 90:                 # resume between two evaluations
            p.unlink()
    (cut / "summary.json").unlink()
    assert run(None, cut, resume=True)["resumed_from"] == 90
    same_traces(tmp_path / "ref", cut)
    assert [r["round"] for r in read_table(cut / "eval").to_pylist()] == [0, 100, 200]


# -- defect 4: one writer per folder ---------------------------------------------------------------------------

def _start_long(out, tmp_path):
    path = tmp_path / "long.json"
    path.write_text(json.dumps(LONG))
    code = f"import json, onlinepg; onlinepg.run(json.load(open({str(path)!r})), {str(out)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob("*.npz")):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    return proc


def test_a_second_writer_is_refused_and_the_lock_dies_with_the_process(tmp_path):
    out = tmp_path / "busy"
    proc = _start_long(out, tmp_path)
    try:
        for extra in ([], ["--overwrite"], ["--resume"]):
            res = subprocess.run(CLI + ["run", "--out", str(out), "--no-progress", *extra], capture_output=True,
                                 text=True, timeout=120)
            assert res.returncode == 2, res.stderr
            assert res.stderr.startswith("onlinepg: error: --out: another onlinepg process is writing to")
            assert len(res.stderr.strip().splitlines()) == 1
        assert proc.poll() is None                         # the first run was not disturbed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # SIGKILL released the lock: a --resume gets past it (to the config check, as the rounds differ)
    res = subprocess.run(CLI + ["run", "--out", str(out), "--resume", "--no-progress", "--set",
                                "run.rounds=300000"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "the config differs" in res.stderr    # got past the lock to the config check


def test_two_simultaneous_runs_one_wins(tmp_path):
    from onlinepg import config as C
    out, toml = tmp_path / "race", tmp_path / "c.toml"
    toml.write_text(C.to_toml(C.resolve(cfg(rounds=2000, eval_every=1000))))
    procs = [subprocess.Popen(CLI + ["run", str(toml), "--out", str(out), "--no-progress"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes[0] == 0 and all(c == 2 for c in codes[1:]), results
    assert all("another onlinepg process" in e or "is not empty" in e for c, e in results if c == 2)
    assert json.loads((out / "summary.json").read_text())["rounds"] == 2000


# -- defect 6: disk full and Ctrl-C ----------------------------------------------------------------------------

def test_disk_full_is_one_line_with_how_to_resume(tmp_path, monkeypatch, capsys):
    import pyarrow.parquet as pqmod
    real = pqmod.write_table
    calls = []

    def full(table, where, *a, **k):
        calls.append(where)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real(table, where, *a, **k)
    monkeypatch.setattr(trace.pq, "write_table", full)
    toml = tmp_path / "c.toml"
    from onlinepg import config as C
    toml.write_text(C.to_toml(C.resolve(cfg(rounds=60, eval_every=10, checkpoint_every=10))))
    out = tmp_path / "r"
    code = cli(["run", str(toml), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("onlinepg: error: no space left on the device") and len(err.strip().splitlines()) == 1
    assert f"onlinepg run --resume --out {out}" in err
    assert not [p for p in out.rglob(".*.tmp")]            # no half-written temporaries left
    monkeypatch.setattr(trace.pq, "write_table", real)
    assert cli(["run", "--out", str(out), "--resume"]) == 0
    run(cfg(rounds=60, eval_every=10, checkpoint_every=10), tmp_path / "ref")
    same_traces(tmp_path / "ref", out)


def test_disk_full_while_writing_the_config_leaves_no_empty_config(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(outdir.os, "fsync", full)
    with pytest.raises(RunError, match="no space left"):
        run(TINY, tmp_path / "r")
    assert not (tmp_path / "r" / "config.toml").exists()
    assert not list((tmp_path / "r").glob(".*.tmp"))
    monkeypatch.undo()
    with pytest.raises(op.ConfigError, match="config.toml missing"):
        run(None, tmp_path / "r", resume=True)


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    out = tmp_path / "r"
    toml = tmp_path / "long.toml"
    from onlinepg import config as C
    toml.write_text(C.to_toml(C.resolve(LONG)))
    # A runner that started us in the background (e.g. `cmd &` in a non-interactive shell) ignores SIGINT, and the
    # child would inherit that: give it the default disposition, which Python turns into KeyboardInterrupt.
    proc = subprocess.Popen(CLI + ["run", str(toml), "--out", str(out), "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob("*.npz")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onlinepg: error: interrupted at round"), err
    assert f"onlinepg run --resume --out {out}" in lines[0]
    # the folder resumes (the lock was released); a shorter config is refused only because it differs
    res = subprocess.run(CLI + ["run", "--out", str(out), "--resume", "--no-progress", "--set", "run.rounds=10"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "the config differs" in res.stderr


# -- §3 CLI consistency ----------------------------------------------------------------------------------------

def _options(command):
    from importlib import import_module
    p = argparse.ArgumentParser()
    import_module(f"onlinepg.commands.{command}").add_arguments(p)
    return {s for a in p._actions for s in a.option_strings}


@pytest.mark.parametrize("command", ["run", "experiment", "sweep", "lq", "plot"])
def test_every_folder_writing_command_has_the_same_options(command):
    opts = _options(command)
    assert {"--out", "--overwrite", "--no-progress"} <= opts
    assert ("--resume" in opts) == (command in ("run", "experiment", "sweep"))


def test_set_algo_name_on_the_default_experiment_gives_a_working_run(tmp_path, capsys):
    for name in ("pg", "sgd", "best_of_m"):
        out = tmp_path / name
        code = cli(["run", "--out", str(out), "--no-progress", "--set", f"algo.name={name}", "--set",
                    "run.rounds=20", "--set", "run.eval_every=10", "--set", "base.steps=5"])
        assert code == 0, capsys.readouterr().err
        saved = (out / "config.toml").read_text()
        assert f'name = "{name}"' in saved and 'baseline = "none"' in saved and "batch = 1\n" in saved
    # the default task, base and run stay; an algo key given with the switch is kept
    code = cli(["run", "--out", str(tmp_path / "g"), "--no-progress", "--set", "algo.name=pg", "--set",
                "algo.baseline=batch_mean", "--set", "algo.group_size=4", "--set", "run.rounds=8", "--set",
                "run.eval_every=4", "--set", "base.steps=5"])
    assert code == 0, capsys.readouterr().err
    saved = (tmp_path / "g" / "config.toml").read_text()
    assert "group_size = 4" in saved and 'kind = "pretrain"' in saved


def test_lq_out_is_a_folder(tmp_path, capsys):
    run(cfg(checkpoint_every=10), tmp_path / "r")
    assert cli(["lq", str(tmp_path / "r"), "--contexts", "50", "--out", str(tmp_path / "q")]) == 0
    assert pq.read_table(tmp_path / "q" / "lq.parquet").num_rows > 0
    assert cli(["lq", str(tmp_path / "r"), "--contexts", "50", "--out", str(tmp_path / "q")]) == 2
    assert cli(["lq", str(tmp_path / "r"), "--contexts", "60", "--out", str(tmp_path / "q"), "--overwrite"]) == 0
    meta = pq.read_schema(tmp_path / "q" / "lq.parquet").metadata
    assert meta[b"onlinepg.lq.n"] == b"60"


def test_experiment_claims_its_folder_and_resumes(tmp_path, capsys):
    out = tmp_path / "e"
    (out / "runs").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    args = ["experiment", "sgd-lr", "--scale", "small", "--seeds", "1", "--set", "T=200", "--out", str(out)]
    assert cli(args) == 2 and "is not empty" in capsys.readouterr().err
    assert cli(args + ["--overwrite"]) == 2 and "not an experiment folder" in capsys.readouterr().err
    (out / "notes.txt").unlink()
    (out / "runs").rmdir()
    assert cli(args + ["--overwrite"]) == 0                 # (an empty folder needs no --overwrite; it is allowed)
    assert cli(args + ["--overwrite"]) == 0                 # an experiment folder is replaced
    first = (out / "results.parquet").read_bytes()
    summaries = {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")}
    assert cli(args + ["--resume"]) == 0                    # every arm finished: kept, not rerun
    assert {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")} == summaries
    assert pq.read_table(out / "results.parquet").equals(pq.read_table(__import__("io").BytesIO(first)))


def test_a_sweep_over_algo_name_on_the_default_experiment_resolves():
    from onlinepg.sweep import load_sweep
    sw = load_sweep({"grid": {"algo.name": ["pg", "pg_batch"]}})
    algos = {c.config.algo.name: c.config.algo for c in sw.cells}
    assert algos["pg"].baseline == "none" and algos["pg"].batch == 1
    assert algos["pg_batch"].baseline == "batch_mean" and algos["pg_batch"].batch == 256


def test_a_non_finite_gradient_stops_a_batched_run_before_anything_holds_it(tmp_path, monkeypatch):
    """pg_batch applies its update without re-checking g (the kernels' gradient of finite weights is finite);
    should an update still see a non-finite ‖g‖², the run stops with one RunError saying what to change, and
    the checkpoints it had written stay readable and finite."""
    from onlinepg import learners
    good = {**TINY, "algo": {"name": "pg_batch", "batch": 8, "reward_type": "process", "reward": "pm1",
                             "baseline": "none"},
            "run": {"rounds": 40, "eval_every": 10, "checkpoint_every": 10, "progress": False}}
    init = learners.BatchLearner.__init__

    def poisoned_init(self, *args):
        """From step 25 on, the step driver starts from NaN weights (so its gradient is not
        finite): the driver itself must notice, stop and report the step."""
        init(self, *args)
        real = self.driver

        def driver(p, rule, lr, fm, w, w0, G2, X, J, Ystar, first, *rest):
            if first + len(X) // self.B > 25:
                w[:] = np.nan
            return real(p, rule, lr, fm, w, w0, G2, X, J, Ystar, first, *rest)
        self.driver = driver
    monkeypatch.setattr(learners.BatchLearner, "__init__", poisoned_init)
    with pytest.raises(RunError, match="step 20: the gradient is not finite.*lower algo.lr"):
        run(good, tmp_path / "bad")
    kept = sorted((tmp_path / "bad" / "checkpoints").glob("ckpt-*.npz"))
    assert kept and all(np.isfinite(np.load(p)["w"]).all() for p in kept)
