"""Compile (or load from the cache) every kernel the engine can call, by playing one tiny run of every algorithm.

``TOUR`` is the list of runs: each per-round algorithm (one round kernel and chunk driver each, see
``kernels.rounds``), batched sgd and pg_batch with outcome and process rewards at batches below and above the
serial/parallel threshold, teacher tasks with Rademacher and mixture contexts and a pre-trained base, a cells task
with a prescribed-likelihood base. ``warm(jobs)`` plays them in ``jobs`` processes at once: Numba compiles on one
core, but each kernel is cached on its own, so separate processes fill the cache in parallel. ``bench.startup``
times the same tour.
"""
import contextlib
import os
import tempfile
import time

from .kernels.rounds import ALGOS as ROUND_ALGOS

_TEACHER = {"kind": "teacher", "d": 6, "k": 4, "N": 3, "contexts": "rademacher", "test_contexts": 256}
_RUN = {"rounds": 200, "eval_every": 100, "progress": False}
TOUR = [
    ("pg_batch process (batch 256), mixture contexts, pretrained base",
     {"task": {"contexts": "mixture", "centres": 4}, "base": {"kind": "pretrain", "steps": 5},
      "algo": {"name": "pg_batch", "batch": 256, "reward_type": "process"}, "run": {"rounds": 5, "eval_every": 5}}),
    ("sgd", {"algo": {"name": "sgd"}}),
    ("sgd batched", {"algo": {"name": "sgd", "batch": 8}, "run": {"rounds": 20, "eval_every": 10}}),
    ("pg (uniform behaviour, ±1, group of 4, loo)", {"algo": {"name": "pg", "behaviour": "uniform",
                                                              "reward": "pm1", "group_size": 4, "baseline": "loo"}}),
    ("pg (mixture behaviour, importance weights)", {"algo": {"name": "pg", "behaviour": "mixture",
                                                             "iw_clip": 4.0}}),
    ("pg bandit (N = 1, fused round)", {"task": {"N": 1}, "algo": {"name": "pg"}}),
    ("best_of_m", {"algo": {"name": "best_of_m"}}),
    ("pg_process explore", {"algo": {"name": "pg_process", "variant": "explore"}}),
    ("pg_process binary_search", {"algo": {"name": "pg_process", "variant": "binary_search"}}),
    ("pg_process on_policy", {"algo": {"name": "pg_process", "variant": "on_policy"}}),
    ("pg_batch outcome (batch 8)", {"algo": {"name": "pg_batch", "batch": 8, "baseline": "batch_mean"},
                                    "run": {"rounds": 20, "eval_every": 10}}),
    ("pg on cells, alpha base", {"task": {"kind": "cells", "k": 4, "N": 3, "M": 50},
                                 "base": {"kind": "alpha", "alpha": 0.1}, "algo": {"name": "pg", "behaviour": "base"}}),
]

# every other per-round algorithm (a new one included) gets a plain run at N = 1, which every one of them accepts
TOUR += [(f"{name} (N = 1)", {"task": {"N": 1}, "algo": {"name": name}}) for name in ROUND_ALGOS
         if name not in {over.get("algo", {}).get("name") for _, over in TOUR}]


def tour_configs():
    """[(name, config dict)] of ``TOUR``, each a complete small experiment."""
    out = []
    for name, over in TOUR:
        cfg = {"task": dict(_TEACHER), "run": dict(_RUN)}
        for section, values in over.items():
            cfg.setdefault(section, {}).update(values)
        if cfg["task"]["kind"] == "cells":
            cfg["task"] = {k: v for k, v in cfg["task"].items() if k not in ("d", "contexts")}
        out.append((name, cfg))
    return out


@contextlib.contextmanager
def rows_decide():
    """Within the block, the row threshold alone picks parallel kernels (``kernels.PARALLEL_MIN_LANES`` = 0): the
    tour's sizes are small in lanes, and its batches above ``PARALLEL_MIN_ROWS`` rows must still compile the
    parallel kernels that paper-sized runs call."""
    from . import kernels as K
    before = K.PARALLEL_MIN_LANES
    K.PARALLEL_MIN_LANES = 0
    try:
        yield
    finally:
        K.PARALLEL_MIN_LANES = before


def play(index):
    """Play tour run ``index`` in a scratch folder; returns (name, seconds)."""
    from .engine import run
    name, cfg = tour_configs()[index]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, rows_decide():
        run(cfg, tmp, overwrite=True)
    return name, time.perf_counter() - t0


def warm(jobs=None, report=None):
    """Play the whole tour in ``jobs`` worker processes (default: the CPU count); ``report(name, seconds)`` is
    called as each run finishes. Returns the wall seconds."""
    import concurrent.futures as cf
    import multiprocessing as mp

    jobs = max(1, jobs or os.cpu_count() or 1)
    t0 = time.perf_counter()
    n = len(TOUR)
    if jobs == 1:
        for i in range(n):
            name, s = play(i)
            if report:
                report(name, s)
    else:
        # spawn, not fork: a forked child would inherit this process's Numba and thread-pool state
        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            for fut in cf.as_completed([pool.submit(play, i) for i in range(n)]):
                name, s = fut.result()
                if report:
                    report(name, s)
    return time.perf_counter() - t0


# -- compile-ahead: a run's evaluation kernels compiled in a helper process while the run compiles the rest ------
_SPEC_FIELDS = ("kind", "k", "N", "d", "M", "normalize", "transition")


class Ahead:
    """A helper process compiling the kernels of a run's evaluations (``ahead``); ``wait()`` before calling them."""

    def __init__(self, proc=None):
        self.proc = proc

    def wait(self, timeout=300):
        """Return once the helper has exited (at once without one). A helper that failed or hangs costs nothing
        but the wait: the run then compiles the kernels itself."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except Exception:       # noqa: BLE001 - a stuck helper must never stop the run
                self.proc.kill()
            self.proc = None


def _loglik_call(features, rows, name=None):
    """(kernel, args) of the call ``Policy.scorer`` makes for ``rows`` rows (here of zeros): the same kernel (or
    the kernel ``name`` of the map's namespace) and argument types as a run's evaluations."""
    import numpy as np
    from .policy import Policy
    w = Policy(features).w
    X, J = np.zeros((rows, features.context_dim)), np.zeros(rows, np.int64)
    Y = np.zeros((rows, features.N), np.int64)
    kernel = features.kernel("loglik_batch", rows) if name is None else getattr(features.kernels, name)
    return kernel, (features.fm, w, X, J, Y, np.empty(rows), np.empty(rows), np.empty((rows, features.N)))


def _cached(kernel, args):
    """True if the Numba cache holds ``kernel`` for these argument types (False when unsure)."""
    try:
        from numba import typeof
        sig = tuple(typeof(a) for a in args)
        cache = kernel._cache
        return cache._index_key(sig, kernel.targetctx.codegen()) in cache._cache_file._load_index()
    except Exception:       # noqa: BLE001 - private Numba API: unsure means "not cached"
        return False


def ahead(features, rows):
    """Start compiling, in a helper process, the ``loglik_batch`` kernels a run's evaluations of ``rows`` (the
    test set's and the tracked contexts' row counts) will call, unless the Numba cache already holds them.

    Numba compiles on one core, and a cold first run spends about a third of its compile time on these kernels
    (the default job: 6 of 19 s); the helper compiles them on the other core while the run compiles its context,
    teacher and step kernels, and the run then loads them from the cache. Only for the 'bigram' and 'cells' maps
    (a 'custom' map's kernels are built from a user function the helper cannot import); never under
    NUMBA_DISABLE_JIT. The helper writes nothing but the cache. Returns an ``Ahead``.
    """
    import json
    import subprocess
    import sys
    from numba import config
    if config.DISABLE_JIT or features.kind == "custom":
        return Ahead()
    todo = {}                           # kernel name → rows: one call per kernel (the argument types are the same)
    for n in sorted({int(r) for r in rows if r}):
        kernel, args = _loglik_call(features, n)
        if not _cached(kernel, args):   # the helper is told the kernel by name: the run's choice of twin stands
            todo.setdefault(kernel.py_func.__name__, n)
    if not todo:
        return Ahead()
    spec = {f: getattr(features, f) for f in _SPEC_FIELDS}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "onlinepg.warmup", json.dumps({"spec": spec, "calls": todo})],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return Ahead()
    return Ahead(proc)


def _ahead_main(arg):
    import json
    from .features import FeatureSpec
    job = json.loads(arg)
    features = FeatureSpec(**job["spec"])
    for name, n in job["calls"].items():
        kernel, args = _loglik_call(features, n, name)
        kernel(*args)


if __name__ == "__main__":
    import sys
    _ahead_main(sys.argv[1])
