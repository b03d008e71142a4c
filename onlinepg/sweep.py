"""Sweeps: a base run config × a grid and/or a list of override sets × seeds; every cell is one engine run
in its own folder, executed by a local process pool or a Dask cluster (``onlinepg.sweep_backends``).

Sweep file (TOML; every key of ``[sweep]`` is in ``SWEEP_KEYS``, docs/sweeps.md has the reference)::

    [sweep]
    base = "../configs/pg.toml"      # run config the cells start from, relative to this file
    seeds = 4                        # replicates per cell
    seed = 0                         # every run.seed derives from this and the cell's key
    [fixed]                          # overrides applied to every cell (not a dimension)
    "run.rounds" = 20000
    [grid]                           # Cartesian product, "section.key" = [values]
    "task.N" = [1, 2, 3, 4]
    [[sets]]                         # explicit override sets, crossed with the grid
    label = "uniform"
    "algo.behaviour" = "uniform"

Output folder::

    sweep.json       the sweep as parsed (provenance)
    runs.parquet     one row per cell: parameters, status, summary figures, wall time, worker host
    runs/[set=<label>/]<param>=<value>/.../seed=<s>/    the cell's engine run folder, plus cell.json
"""
import contextlib
import copy
import itertools
import json
import math
import os
import pathlib
import time
import urllib.parse
from dataclasses import dataclass, field

from . import config as C
from . import outdir
from .errors import ConfigError
from .seeds import derive_seed
from .sweep_folder import COLUMN_TYPES, VOLATILE_COLUMNS, plan, write_runs  # noqa: F401 (re-exported)
from .trace import write_json

SWEEP_KEYS = {
    "base": C.Key("", str, "run config the cells start from, relative to the sweep file ('': the default "
                  "experiment of `onlinepg run`)"),
    "name": C.Key("", str, "sweep name ('': the sweep file's stem); names the default output folder"),
    "seeds": C.Key(1, int, "replicates per cell: seed = 0 … seeds − 1 in the run path", lo=1),
    "seed": C.Key(0, int, "sweep seed: every run.seed is derived from it and the cell's key", lo=0, hi=2**63 - 1),
    "seed_by": C.Key("cell", str, "'cell': run.seed from the set label, grid values and replicate; 'replicate': "
                     "from the replicate only (common random numbers across the grid)",
                     choices=("cell", "replicate")),
    "vary_task": C.Key(False, bool, "also derive task.seed per run like run.seed (a fresh teacher / y* draw "
                       "per replicate) instead of keeping the base config's task.seed"),
}
TABLES = ("sweep", "fixed", "grid", "sets")
MAX_CELLS = 10**6           # each cell is a run folder: a million already outgrows any file system's patience
OWNED = {"run.seed": "is derived per run from sweep.seed (set sweep.seed instead)",
         "run.progress": "is always off inside a sweep (the sweep shows its own progress)"}
_SAFE = "+,-._~"        # kept as is in Hive path values; everything else is %-encoded


@dataclass(frozen=True)
class Cell:
    """One run of the sweep. ``values``: every sweep parameter ("section.key") → its resolved value."""
    index: int
    label: str
    values: dict
    replicate: int
    key: str               # what run.seed (and task.seed with vary_task) derive from
    path: str              # the run folder relative to the sweep folder, e.g. "runs/N=2/seed=0"
    config: dict           # the fully resolved run config


@dataclass
class Sweep:
    name: str
    settings: dict         # the resolved [sweep] table
    columns: dict          # sweep parameter "section.key" → its runs.parquet / Hive column name
    grid_keys: list        # the grid's "section.key" names: the run path's levels between set= and seed=
    has_sets: bool
    file: str = None       # the sweep file, if it came from one
    source: dict = field(default_factory=dict)   # the sweep as parsed
    cells: list = field(default_factory=list)


def reference_table():
    """Markdown table of the [sweep] keys (docs/sweeps.md carries it; tests check it is current)."""
    rows = ["| key | default | accepted | meaning |", "|---|---|---|---|"]
    for key, spec in SWEEP_KEYS.items():
        rows.append(f"| `sweep.{key}` | `{C._toml_value(spec.default)}` | {spec.accepted()} | {spec.doc} |")
    return "\n".join(rows)


def load_sweep(sweep):
    """Parse and validate a sweep (a TOML path or the equivalent dict) and expand and resolve every cell.

    Raises ``ConfigError`` naming the field (and the cell, for a value the run schema rejects) before any run
    starts. In a dict, relative paths are taken from the current directory; in a file, from the file's folder.
    """
    if isinstance(sweep, (str, pathlib.Path)):
        path = pathlib.Path(sweep)
        raw, where, stem = C.load(path), path.parent, path.stem
    elif isinstance(sweep, dict):
        C.check_depth(sweep, "the sweep")
        raw, where, stem = sweep, pathlib.Path.cwd(), "sweep"
    else:
        raise ConfigError(f"a sweep is a TOML path or a dict, got {type(sweep).__name__}")
    for table in raw:
        if table not in TABLES:
            raise ConfigError(f"unknown sweep table [{table}]; accepted: {', '.join(TABLES)}")
    settings = _settings(raw.get("sweep", {}))
    owned = dict(OWNED)
    if settings["vary_task"]:
        owned["task.seed"] = "is derived per run when sweep.vary_task = true"
    fixed = _overrides(_table(raw, "fixed"), "fixed", owned, where)
    grid = _overrides(_table(raw, "grid"), "grid", owned, where, values_are_lists=True)
    sets = _sets(raw.get("sets", []), owned, where)
    for i, (_, over) in enumerate(sets):
        for name in over:
            if name in grid or name in fixed:
                raise ConfigError(f"sets[{i}].{name} is also in [{'grid' if name in grid else 'fixed'}]; "
                                  "give each key in one place")
    for name in grid:
        if name in fixed:
            raise ConfigError(f"grid.{name} is also in [fixed]; give each key in one place")
    n_cells = max(1, len(sets)) * math.prod(len(v) for v in grid.values()) * settings["seeds"]
    if n_cells > MAX_CELLS:
        raise ConfigError(f"the sweep has {n_cells} cells (sets × grid values × sweep.seeds); at most {MAX_CELLS} "
                          "are accepted: lower sweep.seeds or shorten the grid")
    base = _base_config(settings["base"], where)
    params = list(dict.fromkeys([n for _, o in sets for n in o] + list(grid)))
    sw = Sweep(name=settings["name"] or stem, settings=settings, columns=_column_names(params),
               grid_keys=list(grid), has_sets=bool(sets), file=None if isinstance(sweep, dict) else str(sweep),
               source=raw)
    _expand(sw, base, fixed, grid, sets or [(None, {})])
    from . import limits
    available = limits.available_bytes()
    for c in sw.cells:                  # a cell too large for memory is refused before any cell runs
        try:
            limits.check(c.config, available)
        except ConfigError as exc:
            raise ConfigError(f"cell {c.path}: {exc}") from None
    return sw


def _table(raw, name):
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table of \"section.key\" = value entries")
    return value


def _settings(table):
    if not isinstance(table, dict):
        raise ConfigError("[sweep] must be a table")
    out = {key: spec.default for key, spec in SWEEP_KEYS.items()}
    for key, value in table.items():
        if key not in SWEEP_KEYS:
            raise ConfigError(f"unknown key sweep.{key}; accepted: {', '.join(SWEEP_KEYS)}")
        out[key] = SWEEP_KEYS[key].check(f"sweep.{key}", value)
    if out["name"] and not _path_safe(out["name"]):
        raise ConfigError(f"sweep.name must be a plain file name (letters, digits, {_SAFE}), got {out['name']!r}")
    return out


def _overrides(table, where, owned, folder, values_are_lists=False):
    """{"task": {"N": v}} or {"task.N": v} → {"task.N": v}; names checked against the run schema."""
    pairs = []
    for name, value in table.items():
        if isinstance(value, dict):
            pairs += [(f"{name}.{key}", v) for key, v in value.items()]
        else:
            pairs.append((name, value))
    out = {}
    for name, value in pairs:
        sec, _, key = name.partition(".")
        if sec not in C.SCHEMA:
            raise ConfigError(f"{where}.{name}: unknown config section [{sec}]; accepted: {', '.join(C.SCHEMA)}")
        if key not in C.SCHEMA[sec]:
            raise ConfigError(f"{where}.{name}: unknown key {name}; accepted: {', '.join(C.SCHEMA[sec])}")
        if name in owned:
            raise ConfigError(f"{where}.{name}: {name} {owned[name]}")
        if name in out:
            raise ConfigError(f"{where}.{name} is given twice")
        if values_are_lists:
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{where}.{name} must be a non-empty list of values, got {value!r}")
            value = [_relative_path(name, v, folder) for v in value]
        else:
            value = _relative_path(name, value, folder)
        out[name] = value
    return out


def _relative_path(name, value, folder):
    # Workers may run in another directory (or on another machine): weights files get absolute paths.
    if name == "base.path" and isinstance(value, str) and value and not os.path.isabs(value):
        return os.path.abspath(os.path.join(folder, value))
    return value


def _sets(items, owned, folder):
    if not isinstance(items, list) or not all(isinstance(s, dict) for s in items):
        raise ConfigError("sets must be an array of tables ([[sets]] entries)")
    out, seen = [], set()
    for i, item in enumerate(items):
        item = dict(item)
        label = item.pop("label", str(i))
        if not isinstance(label, str) or not _path_safe(label):
            raise ConfigError(f"sets[{i}].label must be a plain name (letters, digits, {_SAFE}), got {label!r}")
        if label in seen:
            raise ConfigError(f"sets[{i}].label {label!r} is used twice")
        seen.add(label)
        out.append((label, _overrides(item, f"sets[{i}]", owned, folder)))
    return out


def _base_config(base, folder):
    if not base:
        user = json.loads(json.dumps(C.DEFAULT_EXPERIMENT))
    else:
        path = folder / base
        if not path.exists():
            raise ConfigError(f"sweep.base: run config not found: {path}")
        user = C.load(path)
    # A relative base.path in the run config means what `onlinepg run` makes of it: the current directory.
    path = user.get("base", {}).get("path") if isinstance(user.get("base"), dict) else None
    if isinstance(path, str) and path and not os.path.isabs(path):
        user["base"]["path"] = os.path.abspath(path)
    return user


def _column_names(params):
    """The short key ("N" for task.N) unless two parameters share it or it names a fixed column."""
    short = [p.split(".", 1)[1] for p in params]
    return {p: (s if short.count(s) == 1 and s not in COLUMN_TYPES else p) for p, s in zip(params, short)}


def _expand(sw, base, fixed, grid, sets):
    s = sw.settings
    names = list(grid)
    seen = {}
    for label, over in sets:
        for combo in itertools.product(*(grid[n] for n in names)):
            chosen = dict(zip(names, combo))
            for rep in range(s["seeds"]):
                key = _seed_key(sw, label, chosen, rep)
                user = copy.deepcopy(base)
                given = {**fixed, **over, **chosen}
                if not s["base"] and given.get("algo.name", "pg_batch") != "pg_batch":
                    user["algo"] = {}   # the default experiment's [algo] is pg_batch's (config.default_experiment)
                for name, value in given.items():
                    sec, k = name.split(".", 1)
                    user.setdefault(sec, {})[k] = value
                user.setdefault("run", {}).update(seed=derive_seed(s["seed"], "run.seed", key), progress=False)
                if s["vary_task"]:
                    user.setdefault("task", {})["seed"] = derive_seed(s["seed"], "task.seed", key)
                try:
                    cfg = C.resolve(user)
                except ConfigError as exc:
                    where = "/".join([f"set={label}"] * (label is not None) +
                                     [f"{sw.columns[n]}={v!r}" for n, v in chosen.items()] + [f"seed={rep}"])
                    raise ConfigError(f"cell {where}: {exc}") from None
                values = {n: _lookup(cfg, n) for n in sw.columns}
                path = _hive_path(sw, label, values, rep)
                if path in seen:
                    raise ConfigError(f"cells {seen[path]} and {len(sw.cells)} share the run folder {path}: two "
                                      "values of one grid key resolve to the same value")
                seen[path] = len(sw.cells)
                sw.cells.append(Cell(len(sw.cells), label, values, rep, key, path, cfg))


def _lookup(cfg, name):
    sec, key = name.split(".", 1)
    return getattr(getattr(cfg, sec), key)


def _seed_key(sw, label, chosen, rep):
    # Sorted and canonical, so reordering the grid's keys in the file does not change any seed.
    if sw.settings["seed_by"] == "replicate":
        return f"seed={rep}"
    parts = ([f"set={label}"] if label is not None else []) + \
        [f"{n}={C._toml_value(chosen[n])}" for n in sorted(chosen)] + [f"seed={rep}"]
    return "/".join(parts)


def _hive_path(sw, label, values, rep):
    parts = ["runs"] + ([f"set={label}"] if label is not None else [])
    parts += [f"{sw.columns[n]}={_path_value(values[n])}" for n in sw.grid_keys] + [f"seed={rep}"]
    for p in parts:
        if len(p.encode()) > 255:
            raise ConfigError(f"run path segment too long for a file name: {p[:60]}…")
    return "/".join(parts)


def _path_value(value):
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = ",".join(repr(v) for v in value)
    else:
        text = repr(value) if isinstance(value, float) else str(value)
    return urllib.parse.quote(text, safe=_SAFE)


def _path_safe(text):
    return bool(text) and text not in (".", "..") and urllib.parse.quote(text, safe=_SAFE) == text


# -------------------------------------------------------------------------------------------------- driver

def run_sweep(sweep, out=None, *, backend="local", scheduler=None, workers=None, threads=1, resume=False,
              overwrite=False, progress=True):
    """Run every cell of ``sweep`` (a TOML path, a dict or a ``Sweep``) into ``out``; returns a summary dict.

    ``backend``: 'local' (a process pool of ``workers`` processes, default one per core), 'dask'
    (``scheduler`` address, or a LocalCluster of ``workers`` processes), or a backend object from
    ``onlinepg.sweep_backends`` (already started or not). ``threads``: Numba threads per worker.
    ``resume``: skip completed cells (those with summary.json), rerun failed and missing ones.
    A failing cell is recorded (status 'failed' with its error) and the others go on.
    """
    t0 = time.perf_counter()
    outdir.flags(overwrite, resume)
    sw = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    if out is None:
        if resume:
            raise ConfigError("resume needs the sweep folder (--out DIR)")
        out = f"sweeps/{sw.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = outdir.check_path(out).absolute()
    with outdir.OutDir(out, "sweep", overwrite=overwrite, resume=resume) as claim:   # one driver per folder
        return _run_sweep(sw, out, claim, t0, backend, scheduler, workers, threads, resume, overwrite, progress)


def _drop_stale_records(out, tasks):
    """A cell to run again loses the cell.json an earlier attempt left (the sweep's file, listed in the sweep's
    manifest; the cell's run may only replace what it wrote itself). One the manifest does not list stays."""
    listed = outdir.listed_files(out)
    for task in tasks:
        rel = f"{task['path']}/cell.json"
        if rel in listed:
            (out / rel).unlink(missing_ok=True)


def _run_sweep(sw, out, claim, t0, backend, scheduler, workers, threads, resume, overwrite, progress):
    from .sweep_backends import execute, make_backend
    records, todo = plan(sw, out, resume, overwrite)
    backend = make_backend(backend, scheduler=scheduler, workers=workers, threads=threads)  # checks names
    skipped = len(records)
    tasks = [{"index": c.index, "path": c.path, "out": str(out / c.path), "config": c.config,
              "mode": mode, "threads": backend.threads} for c, mode in todo]
    tasks.sort(key=lambda t: (sw.cells[t["index"]].replicate, t["index"]))   # a whole grid per seed first
    last_write = [time.monotonic()]

    def on_result(task, rec):
        folder = out / task["path"]
        if rec["status"] == "completed" and not (folder / "summary.json").exists():
            rec = {**rec, "status": "failed", "summary": None, "error_type": "SharedPathError",
                   "error_message": f"the worker reported success but {folder / 'summary.json'} is not there: "
                                    "workers must write to a folder the driver sees (a shared filesystem)",
                   "error_traceback": None}
        outdir.makedirs(folder)
        write_json(folder / "cell.json", rec)
        records[task["index"]] = rec
        if time.monotonic() - last_write[0] > 5.0:       # a killed sweep leaves a recent table behind
            write_runs(out, sw, records)
            last_write[0] = time.monotonic()

    # Start the workers before touching the folder: an unreachable scheduler leaves nothing behind (the claim
    # removes the folder and lock it created).
    with backend if tasks else contextlib.nullcontext():
        claim.replace()                     # empties an old sweep folder when overwriting (OutDir checked it)
        _drop_stale_records(out, tasks)
        provenance = {"name": sw.name, "file": sw.file, "cwd": os.getcwd(), "sweep": sw.source}
        write_json(out / "sweep.json", json.loads(json.dumps(provenance, default=str)))
        write_runs(out, sw, records)
        try:
            if tasks:
                execute(backend, tasks, on_result, progress=progress)
        finally:
            write_runs(out, sw, records)
    statuses = [r.get("status") for r in records.values()]
    return {"out": str(out), "runs": str(out / "runs.parquet"), "cells": len(sw.cells),
            "completed": statuses.count("completed"), "failed": statuses.count("failed"), "skipped": skipped,
            "backend": backend.name, "wall_seconds": time.perf_counter() - t0}
