"""Batched algorithms (pg_batch, grpo, sgd with batch > 1; docs/theory.md §4.5, §4.9): one step kernel per kind of
step, one compiled step driver each — the batched counterpart of ``kernels.rounds``.

``STEPS`` is the table of step kernels, all with the signature ``step(fm, w, w0, X, J, Ystar, p, seed,
first_stream, it, out, g)`` (w0 the reference weights, ``it`` the iteration of a multi-iteration step, p
``StepParams``, out ``StepOut``; g float64[D] accumulated into): ``'fused'`` (``pg_step``: the bigram map's one-pass
step), ``'separate'`` (``separate_step``: any map, any baseline) and ``'grpo'`` (``grpo_step``: the GRPO family,
any map). ``step_kind`` names the kernel a step needs. ``DRIVERS[name]`` and ``DRIVERS[name + '_serial']`` (the kernel's serial twin, for small batches:
``kernels/serial.py``) play a run of steps (``driver``); they are also exported as ``run_steps_<name>[_serial]``,
the names ``FeatureSpec.kernel`` picks from. Adding a batched step = its kernel (this signature), one line here.
"""
from .driver import count_step, step_driver
from .fused import StepOut, StepParams, fused_supported, pg_step, pg_step_serial, step_out, step_params
from .grpo import grpo_step, grpo_step_serial, pass_k_weight, policy_advantages
from .separate import baseline_advantages, separate_step, separate_step_serial, step_advantages

STEPS = {
    "fused": (pg_step, pg_step_serial),
    "separate": (separate_step, separate_step_serial),
    "grpo": (grpo_step, grpo_step_serial),
}
STEP_NAMES = {"fused": "pg_step", "separate": "separate_step", "grpo": "grpo_step"}  # names in a kernels namespace
DRIVERS = {}
for _name, (_par, _ser) in STEPS.items():
    DRIVERS[_name] = step_driver(_par, "run_steps_" + _name)
    DRIVERS[_name + "_serial"] = step_driver(_ser, "run_steps_" + _name + "_serial")
globals().update({"run_steps_" + name: fn for name, fn in DRIVERS.items()})


def step_kind(fm, mode, baseline, algo="pg_batch"):
    """The ``STEPS`` key of a step of algorithm ``algo`` ('grpo' has its own kernel; pg_batch and sgd share the
    others) on feature map ``fm`` with ``mode`` ('outcome', 'process', 'supervised', 'fit') and ``baseline`` (a
    ``codes.BASELINES`` name)."""
    if algo == "grpo":
        return "grpo"
    return "fused" if fused_supported(fm, mode, baseline) else "separate"


__all__ = ["DRIVERS", "STEPS", "STEP_NAMES", "baseline_advantages", "StepOut", "StepParams", "count_step",
           "fused_supported", "grpo_step", "grpo_step_serial", "pass_k_weight", "pg_step", "pg_step_serial",
           "policy_advantages", "separate_step", "separate_step_serial", "step_advantages", "step_driver", "step_kind", "step_out",
           "step_params"] + ["run_steps_" + name for name in DRIVERS]
