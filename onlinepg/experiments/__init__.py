"""The paper's figures and the theorem-scaling experiments, one command each (docs/theory.md §6).

``run_experiment(name, scale='small'|'full', out=None, sets=(), seeds=None)`` runs every arm through the
streaming engine and writes ``results.parquet``, ``results.md`` and the figures into the output folder.
"""
import importlib

from ..errors import ConfigError

MODULES = {"fig1": "fig1", "lq-curves": "lq_curves", "sgd-lr": "sgd_lr", "mistakes": "mistakes",
           "queries": "queries", "barrier": "barrier", "token-lq": "token_lq", "staircase": "staircase",
           "bandit-n1": "bandit_n1", "mistakes-lower-bound": "mistakes_lower_bound",
           "orm-lower-bound": "orm_lower_bound", "per-sample": "per_sample", "pretrain-tail": "pretrain_tail",
           "pretrain-prm": "pretrain_prm", "ablations": "ablations", "sgd-rate": "sgd_rate",
           "barrier-zero": "barrier_zero", "token-lq-exact": "token_lq_exact",
           "fig1-pooled": "fig1_pooled",
           "per-sample-mixture": "per_sample_mixture",
           "mistakes-log": "mistakes_log",
           "pass-at-k": "pass_at_k",
           "orm-floor": "orm_floor"}
NAMES = tuple(MODULES)


def run_experiment(name, scale="small", out=None, sets=(), seeds=None, log=print, *, overwrite=False,
                   resume=False):
    """Run experiment ``name`` into ``out`` (default runs/experiment-<name>-<scale>-<timestamp>): a missing or
    empty folder; ``overwrite`` replaces an experiment folder (never another); ``resume`` keeps the arms
    already finished with the same config, continues partial ones from their checkpoints and runs the rest."""
    from ..outdir import OutDir, check_path, flags
    if name not in MODULES:
        raise ConfigError(f"experiment must be one of {', '.join(NAMES)}; got {name!r}")
    flags(overwrite, resume)
    if out is not None:
        check_path(out)
    from .common import ExperimentRun, pyplot   # the engine and Numba: imported here so that NAMES (--help) stays light
    pyplot()        # every experiment draws figures: without matplotlib, say so before the runs, not after
    module = importlib.import_module(f"{__name__}.{MODULES[name]}")
    ctx = ExperimentRun(name, scale, out, sets, seeds, log)
    ctx.resume = resume
    with OutDir(ctx.out, "experiment", overwrite=overwrite, resume=resume) as claim:
        claim.replace()
        module.run(ctx)
    return ctx
