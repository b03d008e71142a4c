"""onlinepg sweep — run a grid of experiments (a base config × overrides × seeds), locally or on Dask.

Each cell is one `onlinepg run` in DIR/runs/[set=<label>/]<param>=<value>/.../seed=<s>/, and DIR/runs.parquet
has one row per run. Exit status: 0 when every cell completed, 1 when some failed (listed), 2 for a bad
sweep file or option, 130 when interrupted (--resume continues).

--out DIR must be missing or empty; --overwrite replaces DIR only if it is a sweep folder; --resume continues
it (not with --overwrite). One driver writes a sweep folder at a time (DIR/.onlinepg.lock).
"""
import sys

HELP = "run a sweep of experiments over parameters and seeds (local process pool or Dask)"


def add_arguments(p):
    p.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file (see data/sweeps/example.toml)")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default: sweeps/<name>-<timestamp>)")
    p.add_argument("--backend", choices=("local", "dask"), default=None,
                   help="'local' process pool (default) or 'dask' (implied by --scheduler)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address, e.g. tcp://10.0.0.1:8786 (default: a LocalCluster)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes (default: one per core); with --scheduler: wait for N workers")
    p.add_argument("--threads", type=int, default=1, metavar="T", help="Numba threads per worker (default 1)")
    p.add_argument("--resume", action="store_true", help="skip completed cells, rerun failed and missing ones")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it holds a sweep (never another "
                                                            "folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args):
    from ..sweep import load_sweep, run_sweep
    from ..errors import ConfigError

    backend = args.backend or ("dask" if args.scheduler else "local")
    if args.resume and not args.out:
        raise ConfigError("--resume needs --out DIR (the sweep folder to continue)")
    sw = load_sweep(args.sweep)
    try:
        res = run_sweep(sw, args.out, backend=backend, scheduler=args.scheduler, workers=args.workers,
                        threads=args.threads, resume=args.resume, overwrite=args.overwrite,
                        progress=not args.no_progress)
    except KeyboardInterrupt:
        print("onlinepg: sweep interrupted; completed cells are kept, rerun with --resume to finish",
              file=sys.stderr)
        return 130
    print(f"sweep folder: {res['out']}")
    print(f"cells: {res['cells']} | completed: {res['completed']} (skipped as already complete: "
          f"{res['skipped']}) | failed: {res['failed']} | {res['wall_seconds']:.1f} s on {res['backend']}")
    if res["failed"]:
        import pyarrow.parquet as pq
        rows = pq.read_table(res["runs"], columns=["path", "status", "error_type", "error_message"]).to_pylist()
        for row in rows:
            if row["status"] == "failed":
                print(f"  failed {row['path']}: {row['error_type']}: {row['error_message']}", file=sys.stderr)
        return 1
    return 0
