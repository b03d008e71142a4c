"""onlinepg experiment — reproduce one of the paper's figures or theorem-scaling experiments."""
HELP = "run a paper reproduction / scaling experiment (fig1, lq-curves, sgd-lr, mistakes, queries, barrier, ...)"


def add_arguments(p):
    from ..experiments import NAMES
    p.add_argument("name", choices=NAMES, help="the experiment")
    p.add_argument("--scale", choices=("full", "small"), default="full",
                   help="full = the paper's / SPEC's settings; small = shrunk to well under a minute")
    p.add_argument("--out", help="output folder (default: runs/experiment-<name>-<scale>-<timestamp>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an experiment parameter (KEY=VALUE) or a run config key (SECTION.KEY=VALUE)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the experiment's)")


def main(args):
    from ..experiments import run_experiment
    ctx = run_experiment(args.name, args.scale, args.out, args.set, args.seeds)
    print(f"results: {ctx.out / 'results.md'}")
    print((ctx.out / "results.md").read_text())
    return 0
