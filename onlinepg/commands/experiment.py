"""onlinepg experiment — reproduce one of the paper's figures or theorem-scaling experiments.

--out DIR must be missing or empty; --overwrite replaces DIR only if it is an experiment folder; --resume keeps
the arms already finished (same config), continues partial ones from their checkpoints and runs the rest (not
with --overwrite). One process writes a folder at a time. Exit status: 0 done, 2 bad input, 130 interrupted.
"""
HELP = "run a paper reproduction / scaling experiment (fig1, lq-curves, sgd-lr, mistakes, queries, barrier, ...)"


def add_arguments(p):
    from ..experiments import NAMES
    p.add_argument("name", choices=NAMES, help="the experiment")
    p.add_argument("--scale", choices=("full", "small"), default="full",
                   help="full = the paper's settings (docs/theory.md §6); small = shrunk to well under a minute")
    p.add_argument("--out", help="output folder (default: runs/experiment-<name>-<scale>-<timestamp>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an experiment parameter (KEY=VALUE) or a run config key (SECTION.KEY=VALUE)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the experiment's)")
    p.add_argument("--resume", action="store_true", help="continue the experiment in --out (finished arms are kept)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it holds an experiment (never "
                                                            "another folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress output (experiments print one line "
                                                              "per stage, never a bar)")


def main(args):
    from ..errors import ConfigError, Interrupted
    from ..experiments import run_experiment
    if args.resume and not args.out:
        raise ConfigError("--resume needs --out DIR (the experiment folder to continue)")
    log = (lambda *a, **k: None) if args.no_progress else print
    try:
        ctx = run_experiment(args.name, args.scale, args.out, args.set, args.seeds, log,
                             overwrite=args.overwrite, resume=args.resume)
    except KeyboardInterrupt:
        where = f" --out {args.out}" if args.out else " --out DIR (the folder it was writing)"
        raise Interrupted(f"experiment {args.name} interrupted; finished arms are kept: continue with onlinepg "
                          f"experiment {args.name} --scale {args.scale} --resume{where}") from None
    print(f"results: {ctx.out / 'results.md'}")
    print((ctx.out / "results.md").read_text())
    return 0
