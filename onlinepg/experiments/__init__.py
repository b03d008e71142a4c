"""The paper's figures and the theorem-scaling experiments, one command each (SPEC §6).

``run_experiment(name, scale='small'|'full', out=None, sets=(), seeds=None)`` runs every arm through the
streaming engine and writes ``results.parquet``, ``results.md`` and the figures into the output folder.
"""
import importlib

from ..errors import ConfigError
from .common import Context

MODULES = {"fig1": "fig1", "lq-curves": "lq_curves", "sgd-lr": "sgd_lr", "mistakes": "mistakes",
           "queries": "queries", "barrier": "barrier", "token-lq": "token_lq", "staircase": "staircase"}
NAMES = tuple(MODULES)


def run_experiment(name, scale="small", out=None, sets=(), seeds=None, log=print):
    if name not in MODULES:
        raise ConfigError(f"experiment must be one of {', '.join(NAMES)}; got {name!r}")
    module = importlib.import_module(f"{__name__}.{MODULES[name]}")
    ctx = Context(name, scale, out, sets, seeds, log)
    module.run(ctx)
    return ctx
