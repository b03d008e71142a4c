"""Sweep scaling and backend overhead: ``python -m bench.sweep [--quick] [--rounds R] [--reps K]``.

Prints, on this machine, all measured in the same invocation:
  1. the speed-up of a 16-cell sweep (outcome-reward PG, uniform behaviour, cells k = 3, N = 4, M = 8,
     ``--rounds`` rounds per cell, 16 seeds) with 2 local workers against 1: end to end (pool start, kernel
     cache loads, every cell, runs.parquet) and for the cells alone (pool already started);
  2. the per-cell overhead of the Dask backend (a LocalCluster, 2 worker processes) against the local pool
     (2 processes): ``--tiny`` cells of one round each on an already started backend, wall × workers / cells,
     plus the start-up time of each backend.
Variants alternate within each repetition (A B A B …) so drift hits them alike; medians over ``--reps``.
Also printed: the load average before and after, and the cores other processes kept busy meanwhile (busy
time from /proc/stat minus this process tree's CPU time): figures taken on a loaded machine understate.
"""
import argparse
import pathlib
import resource
import statistics
import sys
import tempfile
import time

from .report import system_busy_s

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _sweep(rounds, seeds, name):
    return {"sweep": {"base": str(ROOT / "data" / "configs" / "pg.toml"), "seeds": seeds, "seed": 0, "name": name},
            "fixed": {"task.N": 4, "task.M": 8, "run.rounds": rounds, "run.eval_every": max(1, rounds // 10),
                      "run.trace_every": 100}}


def _loadavg():
    try:
        return pathlib.Path("/proc/loadavg").read_text().split()[:3]
    except OSError:  # pragma: no cover - not Linux
        return ["?"] * 3


class OtherLoad:
    """Cores kept busy by *other* processes while the block ran, on average: the machine's busy time
    (/proc/stat) minus this process tree's CPU time (its own and its reaped children's: every pool and cluster
    is shut down inside the block). Our own workers raise the load average, so it cannot tell this apart."""

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), system_busy_s(), self._own()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        busy = system_busy_s()
        self.cores = None if busy is None else max(0.0, (busy - self.busy0) - (self._own() - self.own0)) / wall

    @staticmethod
    def _own():
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed_sweep(sweep, backend, tmp):
    """(seconds to start the backend, seconds for the sweep on it)."""
    from onlinepg.sweep import run_sweep
    t0 = time.perf_counter()
    with backend:
        t1 = time.perf_counter()
        res = run_sweep(sweep, tempfile.mkdtemp(dir=tmp), backend=backend, progress=False)
        t2 = time.perf_counter()
    assert res["completed"] == res["cells"], res
    return t1 - t0, t2 - t1


def per_cell(backend, tiny, tmp, workers):
    """Start-up seconds, and wall × workers / cells of ``tiny`` one-round cells on the started backend."""
    from onlinepg.sweep import run_sweep
    t0 = time.perf_counter()
    with backend:
        start = time.perf_counter() - t0
        run_sweep(_sweep(1, workers, "warm"), tempfile.mkdtemp(dir=tmp), backend=backend, progress=False)
        t1 = time.perf_counter()
        res = run_sweep(_sweep(1, tiny, "tiny"), tempfile.mkdtemp(dir=tmp), backend=backend, progress=False)
        wall = time.perf_counter() - t1
    assert res["completed"] == tiny, res
    return start, wall * workers / tiny


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller cells and fewer tiny cells (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per cell of the 16-cell sweep (1000000)")
    ap.add_argument("--tiny", type=int, default=None, help="one-round cells for the overhead figure (64)")
    ap.add_argument("--reps", type=int, default=1, help="repetitions (medians are reported)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (100_000 if args.quick else 1_000_000)
    tiny = args.tiny or (16 if args.quick else 64)
    from onlinepg.sweep_backends import DaskBackend, LocalBackend, _cores
    print(f"machine: {_cores()} cores | python {sys.version.split()[0]} | load average before: "
          f"{' '.join(_loadavg())}")
    big = _sweep(rounds, 16, "scaling")
    scale = {1: [], 2: []}
    over = {"local": [], "dask": []}
    with tempfile.TemporaryDirectory() as tmp, OtherLoad() as others:
        for _ in range(args.reps):
            for w in (1, 2):
                scale[w].append(timed_sweep(big, LocalBackend(w), tmp))
            over["local"].append(per_cell(LocalBackend(2), tiny, tmp, 2))
            over["dask"].append(per_cell(DaskBackend(workers=2), tiny, tmp, 2))
    med = lambda xs: statistics.median(xs)  # noqa: E731
    end = {w: med([a + b for a, b in scale[w]]) for w in scale}
    cells = {w: med([b for _, b in scale[w]]) for w in scale}
    start = {k: med([a for a, _ in v]) for k, v in over.items()}
    cost = {k: med([b for _, b in v]) for k, v in over.items()}
    print(f"\n16-cell sweep, {rounds:,} rounds per cell (PG uniform behaviour, cells k=3 N=4 M=8), local backend:")
    print(f"  {'':<34}{'1 worker':>12}{'2 workers':>12}{'speed-up':>10}")
    print(f"  {'end to end (s)':<34}{end[1]:>12.2f}{end[2]:>12.2f}{end[1] / end[2]:>9.2f}x")
    print(f"  {'cells only, pool started (s)':<34}{cells[1]:>12.2f}{cells[2]:>12.2f}{cells[1] / cells[2]:>9.2f}x")
    print(f"  target >= 1.8x on 2 cores: {'PASS' if end[1] / end[2] >= 1.8 else 'MISS'} (end to end)")
    print(f"\nper-cell overhead, {tiny} one-round cells on 2 started workers (wall x workers / cells):")
    print(f"  {'backend':<10}{'start-up (s)':>14}{'per cell (ms)':>16}")
    for k in ("local", "dask"):
        print(f"  {k:<10}{start[k]:>14.2f}{1e3 * cost[k]:>16.1f}")
    print(f"  dask - local: {1e3 * (cost['dask'] - cost['local']):+.1f} ms per cell")
    print(f"\nload average after: {' '.join(_loadavg())} (our own workers included)")
    if others.cores is not None:
        flag = "  WARNING: a loaded machine, the figures understate" if others.cores > 0.1 else ""
        print(f"other processes kept {others.cores:.2f} cores busy on average during the bench{flag}")


if __name__ == "__main__":
    main()
