"""onlinepg warmup — compile the kernels of every algorithm now, in parallel processes, so no later run waits."""
HELP = "compile (or load from the Numba cache) the kernels of every algorithm, in parallel processes"


def add_arguments(p):
    p.add_argument("--jobs", type=int, default=0, help="worker processes (default: the number of CPUs)")


def main(args):
    from ..warmup import TOUR, warm

    print(f"warming {len(TOUR)} tiny runs (every algorithm) ...", flush=True)
    wall = warm(args.jobs or None, report=lambda name, s: print(f"  {s:6.1f} s  {name}", flush=True))
    print(f"kernels ready in {wall:.1f} s")
    return 0
