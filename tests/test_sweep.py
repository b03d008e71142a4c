"""Sweeps: the file format and its errors, keyed seeds, the Hive layout, the local process pool against a real
two-worker Dask LocalCluster bit for bit, failing cells, and resume after a killed sweep."""
import concurrent.futures as cf
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import onlinepg as op
from onlinepg import sweep as S
from onlinepg.engine import TIMING_KEYS
from onlinepg.sweep_backends import LocalBackend
from onlinepg.trace import read_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
PG = ROOT / "data" / "configs" / "pg.toml"
TABLES = ("rounds", "eval", "tracked")
ORIGINAL_NUMBA_ENV = os.environ.get("NUMBA_NUM_THREADS")

# 2 sets × 2 N × 2 seeds = 8 cells; the 'corrupt' set loads a weights file that is not one: it passes the
# up-front validation (a path is a path) and fails inside the engine, on whichever worker runs it.
SWEEP = f"""
[sweep]
base = "{PG}"
seeds = 2
seed = 7
vary_task = true

[fixed]
"run.rounds" = 3000
"run.eval_every" = 1000
"run.trace_every" = 1
"task.M" = 4

[grid]
"task.N" = [1, 2]

[[sets]]
label = "ok"

[[sets]]
label = "corrupt"
"base.kind" = "load"
"base.path" = "corrupt.npz"
"""


def write_sweep(folder, text=SWEEP, name="grid.toml"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.npz").write_bytes(b"this is not an npz file")
    (folder / name).write_text(text)
    return folder / name


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("sweepdef"))


@pytest.fixture(scope="module")
def local_run(sweep_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "sweep"
    return S.run_sweep(sweep_file, out, backend="local", workers=2, progress=False)


@pytest.fixture(scope="module")
def dask_run(sweep_file, tmp_path_factory):
    """The same sweep on a real LocalCluster: two worker processes, one thread each, on loopback."""
    distributed = pytest.importorskip("distributed")
    out = tmp_path_factory.mktemp("dask") / "sweep"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        return S.run_sweep(sweep_file, out, backend="dask", scheduler=cluster.scheduler_address,
                           progress=False)


def runs(result):
    return pq.read_table(result["runs"])


def stable(table):
    return table.select([c for c in table.column_names if c not in S.VOLATILE_COLUMNS])


def same_run_folder(a, b):
    for name in TABLES:
        ta, tb = read_table(a / name), read_table(b / name)
        assert (ta is None) == (tb is None), name
        assert ta is None or ta.equals(tb), (a, name)
    assert (a / "config.toml").read_text() == (b / "config.toml").read_text()
    sa, sb = (json.loads((f / "summary.json").read_text()) for f in (a, b))
    skip = TIMING_KEYS + ("resumed_from", "kernel_threads")     # how it ran, not what it computed
    assert {k: v for k, v in sa.items() if k not in skip} == {k: v for k, v in sb.items() if k not in skip}


# ------------------------------------------------------------------------------------------ format and seeds

def test_example_sweep_expands():
    sw = S.load_sweep(ROOT / "data" / "sweeps" / "example.toml")
    assert len(sw.cells) == 2 * 4 * 4
    assert sw.columns == {"algo.behaviour": "behaviour", "task.N": "N"}
    assert sw.cells[0].path == "runs/set=uniform/N=1/seed=0"
    assert sw.cells[-1].path == "runs/set=on_policy/N=4/seed=3"
    assert len({c.path for c in sw.cells}) == len(sw.cells)
    assert {c.config.run.rounds for c in sw.cells} == {20000}
    assert all(c.config.run.progress is False for c in sw.cells)
    assert len({c.config.run.seed for c in sw.cells}) == len(sw.cells)


def test_seeds_are_keyed_not_ordered(tmp_path):
    base = {"sweep": {"base": str(PG), "seeds": 3, "seed": 5}, "grid": {"task.N": [1, 2, 3], "algo.lr": [0.1, 1.0]}}
    a = S.load_sweep(base)
    b = S.load_sweep({**base, "grid": {"algo.lr": [1.0, 0.1], "task": {"N": [3, 1, 2]}}})  # other order, nested form
    seeds_a = {frozenset(c.path.split("/")): c.config.run.seed for c in a.cells}
    seeds_b = {frozenset(c.path.split("/")): c.config.run.seed for c in b.cells}
    assert seeds_a == seeds_b and len(set(seeds_a.values())) == 18
    cell = a.cells[0]
    assert cell.key == "algo.lr=0.1/task.N=1/seed=0"
    assert cell.config.run.seed == op.derive_seed(5, "run.seed", cell.key)
    assert {c.config.task.seed for c in a.cells} == {0}          # vary_task off: the base's task.seed
    common = S.load_sweep({**base, "sweep": {**base["sweep"], "seed_by": "replicate", "vary_task": True}})
    for c in common.cells:
        assert c.config.run.seed == op.derive_seed(5, "run.seed", f"seed={c.replicate}")
        assert c.config.task.seed == op.derive_seed(5, "task.seed", f"seed={c.replicate}")


def test_column_names_fall_back_to_full_keys():
    sw = S.load_sweep({"sweep": {"base": str(PG)},
                       "grid": {"base.lr": [0.1], "algo.lr": [0.2], "run.rounds": [10], "task.N": [1]}})
    assert sw.columns == {"base.lr": "base.lr", "algo.lr": "algo.lr", "run.rounds": "run.rounds", "task.N": "N"}
    assert sw.cells[0].path == "runs/base.lr=0.1/algo.lr=0.2/run.rounds=10/N=1/seed=0"


@pytest.mark.parametrize("sweep,message", [
    ({"sweep": {"seeds": 0}}, "sweep.seeds must be an integer in [1, inf), got 0"),
    ({"sweep": {"sedes": 2}}, "unknown key sweep.sedes"),
    ({"sweep": {"seed_by": "run"}}, "sweep.seed_by must be one of 'cell', 'replicate'"),
    ({"sweep": {"base": "nope.toml"}}, "sweep.base: run config not found"),
    ({"extra": {}}, "unknown sweep table [extra]"),
    ({"grid": {"task.NN": [1]}}, "grid.task.NN: unknown key task.NN"),
    ({"grid": {"tusk.N": [1]}}, "grid.tusk.N: unknown config section [tusk]"),
    ({"grid": {"task.N": 2}}, "grid.task.N must be a non-empty list of values"),
    ({"grid": {"task.N": []}}, "grid.task.N must be a non-empty list of values"),
    ({"grid": {"task.N": [1, 0]}}, "cell N=0/seed=0: task.N must be an integer in [1, inf), got 0"),
    ({"grid": {"algo.lr": [1, 1.0]}}, "share the run folder runs/lr=1.0/seed=0"),
    ({"grid": {"run.seed": [1, 2]}}, "grid.run.seed: run.seed is derived per run from sweep.seed"),
    ({"sweep": {"vary_task": True}, "fixed": {"task.seed": 3}}, "task.seed is derived per run"),
    ({"fixed": {"algo.lr": 0.1}, "grid": {"algo.lr": [0.1]}}, "grid.algo.lr is also in [fixed]"),
    ({"sets": [{"label": "a"}, {"label": "a"}]}, "sets[1].label 'a' is used twice"),
    ({"sets": [{"label": "a/b"}]}, "sets[0].label must be a plain name"),
    ({"sets": [{"algo.lr": 0.1}], "grid": {"algo.lr": [0.2]}}, "sets[0].algo.lr is also in [grid]"),
    ({"grid": {"task.N": [1, 2]}, "fixed": {"algo.name": "perceptron"}}, "cell N=2/seed=0: algo.name 'perceptron' "
                                                                          "needs task.N = 1"),
])
def test_bad_sweeps_name_the_field_and_write_nothing(sweep, message, tmp_path):
    sweep = {**sweep, "sweep": {"base": str(PG), **sweep.get("sweep", {})}}
    out = tmp_path / "never"
    with pytest.raises(op.ConfigError) as err:
        S.run_sweep(sweep, out, progress=False)
    assert message in str(err.value)
    assert not out.exists()


def test_bad_options_write_nothing(tmp_path, sweep_file):
    for kwargs, message in [({"backend": "slurm"}, "backend must be one of 'local', 'dask'"),
                            ({"threads": 0}, "threads must be an integer >= 1"),
                            ({"workers": 0}, "workers must be an integer >= 1"),
                            ({"scheduler": "tcp://x:1"}, "a scheduler address needs backend 'dask'")]:
        with pytest.raises(op.ConfigError, match=re.escape(message)):
            S.run_sweep(sweep_file, tmp_path / "never", progress=False, **kwargs)
        assert not (tmp_path / "never").exists()


def test_docs_carry_the_current_key_reference():
    text = (ROOT / "docs" / "sweeps.md").read_text()
    table = re.search(r"<!-- sweep-reference:start -->\n(.*)\n<!-- sweep-reference:end -->", text, re.S).group(1)
    assert table == S.reference_table()


# ------------------------------------------------------------------------------------ backends, layout, faults

def test_dask_equals_local_bit_for_bit(local_run, dask_run):
    a, b = runs(local_run), runs(dask_run)
    assert stable(a).equals(stable(b))
    assert all(w.startswith("tcp://127.0.0.1:") for w in b.column("worker").to_pylist())
    assert all(w.startswith("pid ") for w in a.column("worker").to_pylist())
    assert a.column("kernel_threads").to_pylist() == [1, 1, 1, 1, None, None, None, None]
    for path in [r["path"] for r in a.to_pylist() if r["status"] == "completed"]:
        same_run_folder(pathlib.Path(local_run["out"]) / path, pathlib.Path(dask_run["out"]) / path)


def test_failing_cells_are_recorded_and_the_rest_complete(local_run, dask_run):
    for result in (local_run, dask_run):
        assert (result["cells"], result["completed"], result["failed"]) == (8, 4, 4)
        rows = runs(result).to_pylist()
        for row in rows:
            folder = pathlib.Path(result["out"]) / row["path"]
            if row["set"] == "corrupt":
                assert row["status"] == "failed" and row["error_type"] == "ConfigError"
                assert "corrupt.npz is not an onlinepg weights file" in row["error_message"]
                assert "build_base" in row["error_traceback"] and row["rounds"] is None
                assert not (folder / "summary.json").exists()
            else:
                assert row["status"] == "completed" and row["error_type"] is None
                assert row["rounds"] == 3000 and 0 <= row["final_test_error"] <= 1
            assert json.loads((folder / "cell.json").read_text())["status"] == row["status"]


def test_cell_is_a_plain_engine_run(local_run, sweep_file, tmp_path):
    cell = S.load_sweep(sweep_file).cells[3]
    assert cell.path == "runs/set=ok/N=2/seed=1"
    op.run(cell.config, tmp_path / "plain", progress=False)
    same_run_folder(pathlib.Path(local_run["out"]) / cell.path, tmp_path / "plain")


def test_hive_layout_reads_as_one_table(local_run):
    out = pathlib.Path(local_run["out"])
    files = sorted(str(p) for p in out.glob("runs/**/eval/*.parquet"))
    evals = ds.dataset(files, format="parquet", partitioning="hive").to_table()
    assert {"set", "N", "seed", "round", "test_error"} <= set(evals.column_names)
    assert evals.num_rows == 4 * 4                                   # 4 completed runs × evaluations 0..3000
    rows = runs(local_run).to_pylist()
    final = {(r["set"], r["N"], r["seed"]): r["final_test_error"] for r in rows if r["status"] == "completed"}
    last = {(e["set"], e["N"], e["seed"]): e["test_error"] for e in evals.to_pylist() if e["round"] == 3000}
    assert final == last


def test_refuses_non_empty_folder_and_changed_sweep(local_run, sweep_file, tmp_path):
    with pytest.raises(op.ConfigError, match="is not empty"):
        S.run_sweep(sweep_file, local_run["out"], progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(op.ConfigError, match="not a sweep folder"):
        S.run_sweep(sweep_file, tmp_path / "mine", overwrite=True, progress=False)
    assert (tmp_path / "mine" / "thesis.tex").exists()
    changed = write_sweep(tmp_path / "def", SWEEP.replace('"run.rounds" = 3000', '"run.rounds" = 2000'))
    before = (pathlib.Path(local_run["out"]) / "runs.parquet").stat().st_mtime_ns
    with pytest.raises(op.ConfigError, match="completed with a different config"):
        S.run_sweep(changed, local_run["out"], resume=True, progress=False)
    assert (pathlib.Path(local_run["out"]) / "runs.parquet").stat().st_mtime_ns == before


def test_resume_reruns_failed_cells_only(tmp_path):
    text = SWEEP.replace('"task.N" = [1, 2]', '"task.N" = [2]')
    sweep = write_sweep(tmp_path / "def", text)
    out = tmp_path / "sweep"
    first = S.run_sweep(sweep, out, workers=1, progress=False)
    assert (first["completed"], first["failed"]) == (2, 2)
    done = {p: p.stat().st_mtime_ns for p in out.glob("runs/set=ok/**/*") if p.is_file()}
    # repair the weights file the failing cells load: a resume must rerun exactly those
    cfg = S.load_sweep(sweep).cells[0].config
    task = op.CellsTask(cfg.task.k, 2, M=cfg.task.M, gamma=cfg.task.gamma)
    op.save_policy(op.Policy(task.features), tmp_path / "def" / "corrupt.npz")
    second = S.run_sweep(sweep, out, resume=True, workers=1, progress=False)
    assert (second["skipped"], second["completed"], second["failed"]) == (2, 4, 0)
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/set=ok/**/*") if p.is_file()} == done
    assert set(runs(second).column("status").to_pylist()) == {"completed"}


def numba_settings():
    import numba
    return os.environ.get("NUMBA_NUM_THREADS"), numba.config.NUMBA_NUM_THREADS, numba.get_num_threads()


def test_local_workers_start_with_one_numba_thread():
    with LocalBackend(1) as backend:
        assert backend._pool.submit(numba_settings).result() == ("1", 1, 1)
    assert os.environ.get("NUMBA_NUM_THREADS") == ORIGINAL_NUMBA_ENV     # the driver's environment is restored


class DyingLocalBackend(LocalBackend):
    """The local pool, except that the worker handed cell 1 dies on the spot (as on a segfault or OOM kill)."""

    def submit(self, task):
        if task["index"] == 1:
            return self._pool.submit(os._exit, 1)
        return super().submit(task)


def test_dead_worker_fails_its_cells_only(tmp_path):
    sw = S.load_sweep(write_sweep(tmp_path / "def"))
    ok = [c.index for c in sw.cells if c.label == "ok"]
    res = S.run_sweep(sw, tmp_path / "s", backend=DyingLocalBackend(2), progress=False)
    rows = runs(res).to_pylist()
    assert rows[1]["status"] == "failed" and rows[1]["error_type"] == "BrokenProcessPool"
    # the other cell in flight when the pool broke may be failed too; everything after it ran on a new pool
    assert sum(rows[i]["status"] == "completed" for i in ok) >= len(ok) - 2
    assert all(r["status"] in ("completed", "failed") for r in rows)     # every cell was tried


def test_killed_sweep_resumes_what_is_missing(tmp_path):
    """SIGKILL the CLI (driver and workers) mid-sweep; --resume on the Dask backend finishes only the missing
    cells, leaves completed ones untouched, and ends equal to an uninterrupted sweep."""
    text = f"""
[sweep]
base = "{PG}"
seeds = 3
[fixed]
"run.rounds" = 100000
"run.eval_every" = 5000
"run.trace_every" = 100
"run.checkpoint_every" = 5000
[grid]
"task.N" = [1, 2]
"""
    sweep = write_sweep(tmp_path / "def", text)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "onlinepg.cli", "sweep", str(sweep), "--out", str(out),
                             "--workers", "1", "--no-progress"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    def partial():      # a cell in flight with a checkpoint, well before its end (so it cannot finish first)
        for c in out.glob("runs/*/*/checkpoints"):
            done = [int(p.stem.split("-")[1]) for p in c.glob("ckpt-*.npz")]
            if done and max(done) <= 50000 and not (c.parent / "summary.json").exists():
                return True
        return False
    deadline = time.time() + 120
    while time.time() < deadline and (len(list(out.glob("runs/**/summary.json"))) < 2 or not partial()):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    completed = sorted(p.parent for p in out.glob("runs/**/summary.json"))
    assert 2 <= len(completed) < 6, "the sweep was not interrupted mid-way"
    stamps = {p: p.stat().st_mtime_ns for c in completed for p in c.rglob("*") if p.is_file()}
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "sweep", str(sweep), "--out", str(out), "--resume",
                          "--backend", "dask", "--workers", "2", "--no-progress"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"skipped as already complete: {len(completed)}" in res.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    ref = S.run_sweep(sweep, tmp_path / "ref", workers=2, progress=False)
    a, b = pq.read_table(out / "runs.parquet"), runs(ref)
    assert stable(a).equals(stable(b)) and set(a.column("status").to_pylist()) == {"completed"}
    assert max(a.column("resumed_from").to_pylist()) > 0          # the partial cell went on from its checkpoint
    for path in a.column("path").to_pylist():
        same_run_folder(out / path, tmp_path / "ref" / path)
    w = [np.load(sorted((f / "checkpoints").glob("*.npz"))[-1])["w"] for f in (out / path, tmp_path / "ref" / path)]
    assert np.array_equal(*w)


def test_cli_reports_failures_and_errors(local_run, sweep_file, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(local_run["out"], out)
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "sweep", str(sweep_file), "--out", str(out),
                          "--resume", "--workers", "1", "--no-progress"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1
    assert "failed: 4" in res.stdout and "skipped as already complete: 4" in res.stdout
    assert "failed runs/set=corrupt/N=1/seed=0: ConfigError" in res.stderr
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "sweep", str(sweep_file), "--threads", "0"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "threads must be an integer >= 1" in res.stderr and "Traceback" not in res.stderr


class BrokenOnSubmitBackend(DyingLocalBackend):
    """The dying pool, where the break also reaches the driver as an exception from ``submit`` (it does when
    the executor notices the dead worker before the driver collects the futures): cells are not lost."""

    def __init__(self, workers):
        super().__init__(workers)
        self.raised = False

    def submit(self, task):
        if task["index"] == 2 and not self.raised:
            self.raised = True
            raise cf.process.BrokenProcessPool("the pool broke before this cell was handed over")
        return super().submit(task)


def test_a_pool_that_breaks_on_submit_loses_no_cell(tmp_path):
    sw = S.load_sweep(write_sweep(tmp_path / "def"))
    backend = BrokenOnSubmitBackend(2)
    res = S.run_sweep(sw, tmp_path / "s", backend=backend, progress=False)
    rows = runs(res).to_pylist()
    assert backend.raised and len(rows) == len(sw.cells)
    assert all(r["status"] in ("completed", "failed") for r in rows)
    # the refused cell waited for a pool and ran; it was not recorded as failed by the refusal
    assert not any("before this cell was handed over" in (r["error_message"] or "") for r in rows)
