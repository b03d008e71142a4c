"""Compile (or load from the cache) every kernel the engine can call, by playing one tiny run of every algorithm.

``TOUR`` is the list of runs: each per-round algorithm (one round kernel and chunk driver each, see
``kernels.rounds``), batched sgd and pg_batch with outcome and process rewards at batches below and above the
serial/parallel threshold (the fused step) and on cells (the separate step), grpo at both sizes, teacher tasks with Rademacher and mixture contexts and a pre-trained base, a cells task
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
    ("pg_batch on cells, process reward with a group baseline (the separate step)",
     {"task": {"kind": "cells", "k": 4, "N": 3, "M": 50}, "base": {"kind": "alpha", "alpha": 0.1},
      "algo": {"name": "pg_batch", "batch": 8, "reward_type": "process", "baseline": "group_mean", "group_size": 2},
      "run": {"rounds": 20, "eval_every": 10}}),
    ("grpo (batch 256: the parallel step; KL, two iterations)",
     {"algo": {"name": "grpo", "batch": 256, "num_generations": 8, "beta": 0.04, "num_iterations": 2},
      "run": {"rounds": 5, "eval_every": 5}}),
    ("grpo (batch 8: the serial step)", {"algo": {"name": "grpo", "batch": 8, "num_generations": 4},
                                         "run": {"rounds": 20, "eval_every": 10}}),
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

