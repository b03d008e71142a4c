"""onlinepg — a Numba-compiled simulator of post-training linear autoregressive models with policy gradients.

``onlinepg.kernels`` holds the public Numba kernels; this package is the thin Python layer around them.
"""
__version__ = "0.1.0"

import importlib

from .errors import ConfigError

# The public names below live in modules that import NumPy and the Numba kernels (seconds of start-up); they are
# imported on first use, so `import onlinepg` — and `onlinepg --help` — stays light. name -> (module, attribute);
# attribute None means the module itself.
_LAZY = {"kernels": (".kernels", None), "lq": (".lq", None), "FeatureSpec": (".features", "FeatureSpec"),
         "load_policy": (".weights", "load_policy"), "save_policy": (".weights", "save_policy"),
         "Policy": (".policy", "Policy"), "Samples": (".policy", "Samples"), "derive_seed": (".seeds", "derive_seed"),
         **{name: (".tasks", name) for name in ("Batch", "CellsTask", "ConstantTask", "TeacherTask",
                                               "beta_for_alpha",
                                               "bottleneck_base", "cells_base", "empirical_margin",
                                               "staircase_base", "teacher_base")}}

__all__ = ["kernels", "lq", "run_sweep", "ConfigError", "FeatureSpec", "load_policy", "save_policy", "run", "Policy", "Samples", "derive_seed", "Batch", "CellsTask",
           "ConstantTask", "TeacherTask", "beta_for_alpha", "bottleneck_base", "cells_base", "empirical_margin",
           "staircase_base", "teacher_base"]


def run(config=None, out="runs/default", **kwargs):
    """Run one experiment (the same as ``onlinepg run``); see ``onlinepg.engine.run``."""
    from .engine import run as _run
    return _run(config, out, **kwargs)


def run_sweep(sweep, out=None, **kwargs):
    """Run a sweep (the same as ``onlinepg sweep``); see ``onlinepg.sweep.run_sweep``."""
    from .sweep import run_sweep as _run_sweep
    return _run_sweep(sweep, out, **kwargs)


def __getattr__(name):
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = importlib.import_module(module, __name__)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value          # later lookups are plain attribute reads
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
