"""onlinepg plot — PNG figures of a run folder, written into RUN_DIR/figures/.

Training curves (test error, cumulative mistakes and queries, tracked likelihood trajectories) from the
run's Parquet traces, and likelihood profiles (CDF, Likelihood Quantile, α-tail, histogram) of the base and
kept checkpoints, computed exactly on fresh contexts of the run's task. Needs matplotlib:
matplotlib (a dependency of onlinepg).
"""
HELP = "figures of a run: test error, mistakes/queries, tracked likelihoods, likelihood CDF, LQ, alpha-tail"


def add_arguments(p):
    from ..help_defaults import DEFAULT_CONTEXTS
    p.add_argument("run", metavar="RUN_DIR", help="a run folder written by onlinepg run")
    p.add_argument("--contexts", type=int, default=DEFAULT_CONTEXTS, metavar="N",
                   help=f"fresh contexts for the likelihood profiles (default {DEFAULT_CONTEXTS})")
    p.add_argument("--models", type=int, default=6, metavar="M",
                   help="at most M models in the profile figures: base + kept checkpoints (default 6)")
    p.add_argument("--out", metavar="DIR", help="figure folder, missing or empty (default RUN_DIR/figures, whose "
                                                "figures are replaced)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it holds figures (never another "
                                                            "folder)")
    p.add_argument("--no-progress", action="store_true", help="accepted for symmetry: plot shows no progress bar")


def main(args):
    from ..plots import plot_run
    written, skipped = plot_run(args.run, contexts=args.contexts, out=args.out, max_models=args.models,
                                overwrite=args.overwrite)
    for path in written:
        print(f"wrote {path}")
    for note in skipped:
        print(f"skipped {note}")
    return 0
