"""A sweep folder's state on disk: runs.parquet, each cell's record, and what ``--resume`` has left to do.

A cell is complete iff its run folder holds the engine's summary.json (written last, atomically), so a sweep
killed at any moment loses no completed run. The driver adds cell.json (the worker's record: status, host,
timings, error) next to it; runs.parquet is rebuilt from the records, so it may lag behind a killed sweep but
never loses anything a resume cannot recover.
"""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from . import config as C
from .errors import ConfigError
from .outdir import LOCK, record

SUMMARY_INT = ("rounds", "updates", "orm_queries", "prm_queries", "tokens_sampled", "mistakes_sampled",
               "kernel_threads", "resumed_from")
SUMMARY_FLOAT = ("mistakes_expected", "final_test_error", "final_test_error_avg", "final_mean_loglik_star",
                 "wall_seconds", "compile_seconds", "rounds_per_second")
COLUMN_TYPES = {"cell": pa.int64(), "set": pa.string(), "seed": pa.int64(), "run_seed": pa.int64(),
                "task_seed": pa.int64(), "path": pa.string(), "status": pa.string(),
                **{c: pa.int64() for c in SUMMARY_INT}, **{c: pa.float64() for c in SUMMARY_FLOAT},
                "cell_seconds": pa.float64(), "host": pa.string(), "worker": pa.string(),
                "error_type": pa.string(), "error_message": pa.string(), "error_traceback": pa.string()}
# Columns that depend on when, where and how fast a cell ran — not on what it computed. Everything else in
# runs.parquet is identical whichever backend or worker ran the cells.
VOLATILE_COLUMNS = ("resumed_from", "wall_seconds", "compile_seconds", "rounds_per_second", "cell_seconds",
                    "host", "worker")


def runs_table(sw, records):
    """One row per cell (in cell order): parameters, status, summary figures, timings, host, error."""
    cols = {"cell": [c.index for c in sw.cells]}
    if sw.has_sets:
        cols["set"] = [c.label for c in sw.cells]
    for name, col in sw.columns.items():
        cols[col] = [c.values[name] for c in sw.cells]
    cols.update(seed=[c.replicate for c in sw.cells], run_seed=[c.config.run.seed for c in sw.cells],
                task_seed=[c.config.task.seed for c in sw.cells], path=[c.path for c in sw.cells])
    recs = [records.get(c.index, {}) for c in sw.cells]
    cols["status"] = [r.get("status", "pending") for r in recs]
    for col in SUMMARY_INT + SUMMARY_FLOAT:
        cols[col] = [(r.get("summary") or {}).get(col) for r in recs]
    for col in ("cell_seconds", "host", "worker", "error_type", "error_message", "error_traceback"):
        cols[col] = [r.get(col) for r in recs]
    return pa.table({name: pa.array(values, type=COLUMN_TYPES.get(name)) for name, values in cols.items()})


def write_runs(out, sw, records):
    """``out/runs.parquet``, written to a temporary name and renamed: a reader never sees half a file."""
    tmp = out / ".runs.parquet.tmp"
    record(out / "runs.parquet")
    pq.write_table(runs_table(sw, records), tmp)
    os.replace(tmp, out / "runs.parquet")


def plan(sw, out, resume, overwrite):
    """Completed cells' records, and (cell, mode) for the rest; raises before anything is written."""
    if not resume:
        if out.exists() and any(p.name != LOCK for p in out.iterdir()):
            if not overwrite:
                raise ConfigError(f"sweep folder {out} is not empty; pass overwrite=True (--overwrite) to replace "
                                  "it or resume=True (--resume) to continue it")
        return {}, [(c, "fresh") for c in sw.cells]
    records, todo = {}, []
    for c in sw.cells:
        folder = out / c.path
        same = (folder / "config.toml").exists() and _same_config(folder / "config.toml", c.config)
        if (folder / "summary.json").exists():
            if not same:
                raise ConfigError(f"--resume: cell {c.path} was completed with a different config than the sweep "
                                  "now gives it (was the sweep file changed?); use a new --out")
            records[c.index] = _completed_record(folder)
        elif same and any((folder / "checkpoints").glob("ckpt-*.npz")):
            todo.append((c, "resume"))      # continue from the last checkpoint: the same trace, less work
        else:
            todo.append((c, "fresh"))
    return records, todo


def _same_config(path, cfg):
    try:
        saved = C.resolve(C.load(path))
    except ConfigError:
        return False
    return saved.quiet == cfg.quiet


def _completed_record(folder):
    summary = json.loads((folder / "summary.json").read_text())
    try:
        rec = json.loads((folder / "cell.json").read_text())
        if rec.get("status") == "completed":
            return rec
    except (OSError, ValueError):
        pass
    # killed between the run's summary.json and the sweep's cell.json: the run itself is complete
    return {"status": "completed", "summary": summary, "cell_seconds": summary.get("wall_seconds")}
