"""onlinepg lq — the exact Likelihood Quantile Q(ε) and token-level Q^TL(ε) of a run's weights (docs/theory.md §5).

Evaluates log p(y*|x) and the min-token log-prob exactly on a fresh context set of the run's task, prints
the table (ε, Q(ε), Q^TL(ε)) and writes it to lq.parquet. Likelihoods below float64's range are printed
from their logs (e.g. 3.2e-412). The same as ``onlinepg.lq.lq_report``.
"""
HELP = "likelihood quantile Q(eps) and token-level Q_TL(eps) of a run's (or a weights file's) model"


def add_arguments(p):
    from ..help_defaults import DEFAULT_CONTEXTS, DEFAULT_EPS, WHICH_HELP
    p.add_argument("source", metavar="RUN_DIR_or_WEIGHTS",
                   help="a run folder, or a weights .npz (save_policy output, base.npz or a checkpoint)")
    p.add_argument("--contexts", type=int, default=DEFAULT_CONTEXTS, metavar="N",
                   help=f"fresh contexts to evaluate (default {DEFAULT_CONTEXTS}; cells tasks with M <= N use "
                        "all M)")
    p.add_argument("--eps", type=float, nargs="+", default=list(DEFAULT_EPS), metavar="EPS",
                   help="epsilon values in (0, 1) (default: " + " ".join(f"{e:g}" for e in DEFAULT_EPS) + ")")
    p.add_argument("--which", default="final", help=f"run folders: {WHICH_HELP} (default final)")
    p.add_argument("--config", help="run config TOML giving the task (needed for a weights file that is not "
                                    "inside a run folder)")
    p.add_argument("--out", metavar="DIR", help="output folder for lq.parquet, missing or empty (default: lq.parquet "
                                                "in the run folder / beside the weights, replaced)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if an earlier `lq --out` wrote it")
    p.add_argument("--no-progress", action="store_true", help="accepted for symmetry: lq shows no progress bar")


def main(args):
    from ..lq import lq_report
    report = lq_report(args.source, contexts=args.contexts, eps=args.eps, which=args.which,
                       config=args.config, out=args.out, overwrite=args.overwrite)
    print(report.text())
    print(f"\nwrote {report.path}")
    return 0
