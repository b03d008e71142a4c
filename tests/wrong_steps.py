"""Test-only wrong engines for the batched step (never user options): the fused step with its gradient zeroed
(a learner that does not learn) or negated (descent instead of ascent), each with its own compiled driver, and a
context manager that makes the engine pick them for the runs inside it."""
import contextlib

from numba import njit

import onlinepg.kernels as K
from onlinepg.kernels.steps import pg_step, pg_step_serial, step_driver


def _wrong(step, sign):
    @njit
    def wrong_step(fm, w, w0, X, J, Ystar, p, seed, first_stream, it, out, g):
        g0 = g.copy()
        step(fm, w, w0, X, J, Ystar, p, seed, first_stream, it, out, g)
        for i in range(g.shape[0]):
            g[i] = g0[i] + sign * (g[i] - g0[i])
    return wrong_step


_DRIVERS = {}


def drivers(mode):
    """(parallel, serial) drivers of the fused step with its gradient scaled by 0 ('zero') or −1 ('flip')."""
    if mode not in _DRIVERS:
        sign = {"zero": 0.0, "flip": -1.0}[mode]
        _DRIVERS[mode] = (step_driver(_wrong(pg_step, sign), f"run_steps_wrong_{mode}", cache=False),
                          step_driver(_wrong(pg_step_serial, sign), f"run_steps_wrong_{mode}_serial", cache=False))
    return _DRIVERS[mode]


def in_arm(arm, mode):
    """An experiment's ``_engine(arm)`` stand-in: the wrong fused step ``mode`` for ``arm``, the right one for the
    others."""
    return lambda a: wrong_fused_step(mode) if a == arm else contextlib.nullcontext()


@contextlib.contextmanager
def wrong_fused_step(mode):
    """Runs started inside use the wrong fused step (the engine looks its drivers up by name in ``kernels``)."""
    par, ser = drivers(mode)
    saved = K.run_steps_fused, K.run_steps_fused_serial
    K.run_steps_fused, K.run_steps_fused_serial = par, ser
    try:
        yield
    finally:
        K.run_steps_fused, K.run_steps_fused_serial = saved
