"""onlinepg — a Numba-compiled simulator of post-training linear autoregressive models with policy gradients.

``onlinepg.kernels`` holds the public Numba kernels; this package is the thin Python layer around them.
"""
__version__ = "0.1.0"

from . import kernels, lq
from .errors import ConfigError
from .features import FeatureSpec
from .io import load_policy, save_policy
from .policy import Policy, Samples
from .seeds import derive_seed
from .tasks import (Batch, CellsTask, TeacherTask, beta_for_alpha, bottleneck_base, cells_base,
                    empirical_margin, staircase_base, teacher_base)

__all__ = ["kernels", "lq", "run_sweep", "ConfigError", "FeatureSpec", "load_policy", "save_policy", "run", "Policy", "Samples", "derive_seed", "Batch", "CellsTask",
           "TeacherTask", "beta_for_alpha", "bottleneck_base", "cells_base", "empirical_margin",
           "staircase_base", "teacher_base"]


def run(config=None, out="runs/default", **kwargs):
    """Run one experiment (the same as ``onlinepg run``); see ``onlinepg.engine.run``."""
    from .engine import run as _run
    return _run(config, out, **kwargs)


def run_sweep(sweep, out=None, **kwargs):
    """Run a sweep (the same as ``onlinepg sweep``); see ``onlinepg.sweep.run_sweep``."""
    from .sweep import run_sweep as _run_sweep
    return _run_sweep(sweep, out, **kwargs)
