"""The chunk loop of the batched algorithms: a run of steps per kernel call, compiled once per step kernel.

``step_driver(step_fn, name)`` returns ``run(p, rule, lr, fm, w, w0, G2, X, J, Ystar, first, seed, counters,
trace_every, trace, out, g)``. It plays steps ``first … first+S−1``, S = len(X) // B: step t takes rows
t·B … t·B+B−1 of the call's contexts (B = len(out.llstar)), draws row b from RNG stream t·B + b of ``seed``,
accumulates its gradient with ``step_fn`` (a ``steps.STEPS`` kernel), applies the update under ``rule`` and
counts the step and writes its trace row as the per-round drivers do (``counters``). A step of
``p.iterations`` > 1 (the GRPO family's ``num_iterations``) calls ``step_fn`` that often on the same samples,
with ``it`` = 0, 1, …, and applies an update after each call (iteration 0 draws the samples). A run cut into calls of any
number of steps, or resumed at any step, plays the same steps bit for bit.

The trace row of a step: its first context id, the mean reward (1 for supervised steps, the mean prefix reward for
process rewards, the mean outcome reward), the fraction of correct responses, the batch means of log p(y*|x)
and of the sampled responses' log-probability (NumPy's summation order: ``counters.pairwise_sum``), and the
(last) update's step size and ‖g‖; the ``updates`` counter counts every update applied. Expected mistakes add Σ_b (1 − p(y*_b|x_b)).

Each driver is compiled under its own name with ``STEP`` bound (the round drivers' pattern, ``rounds.driver``), so
each has its own on-disk cache entry.
"""
import math
import types

import numpy as np
from numba import njit

from ..codes import STEP_PRM, STEP_SUPERVISED
from ..counters import add_counts, pairwise_sum, write_trace_row
from ..updates import apply_update

STEP = None  # bound per driver by ``step_driver``


@njit(cache=True)
def count_step(counters, out, N, mode, neg, updated, scratch):
    """Add one step's outcome (``StepOut`` after the step; ``updated``: the updates that changed the weights) to
    the counters;
    returns (fraction correct, mean reward,
    mean log p(y*|x), mean log p(y|x)). ``scratch`` float64[B]."""
    llstar, prefix = out.llstar, out.prefix
    B = llstar.shape[0]
    n_ok = 0
    n_tok = 0
    for b in range(B):
        scratch[b] = 1.0 - math.exp(llstar[b])
        if prefix[b] == N:
            n_ok += 1
        n_tok += prefix[b]
    orm = 0.0
    prm = 0.0
    if mode == STEP_SUPERVISED:
        reward = 1.0
    elif mode == STEP_PRM:
        prm = B * N
        reward = n_tok / (B * N)
    else:
        orm = B
        reward = (n_ok + neg * (B - n_ok)) / B
    add_counts(counters, 1.0, float(orm), float(prm), float(B * N), float(B - n_ok), pairwise_sum(scratch),
               float(updated))
    return n_ok / B, reward, pairwise_sum(llstar) / B, pairwise_sum(out.logp) / B


def _run_steps(p, rule, lr, fm, w, w0, G2, X, J, Ystar, first, seed, counters, trace_every, trace, out, g):
    """Play len(X) // B steps; return (steps played, trace rows written). Fewer steps than asked: the last one's
    gradient was not finite (w holds its non-finite update; the caller stops the run).

    p StepParams; rule an LR_RULES code with base rate lr; w float64[D] (updated); w0 float64[D] the reference
    (base) weights, read by the GRPO family's KL penalty; G2 float64[D] Adagrad state
    (updated; unused by the other rules). X float64[S·B, d], J int64[S·B], Ystar int64[S·B, N]. counters
    float64[NCOUNT] (updated); trace float64[≥ S // trace_every + 1, NTRACE]: a row for every step t with
    t % trace_every == 0. out StepOut, g float64[D]: the step's work space (hold the last step's on return).
    """
    B = out.llstar.shape[0]
    N = Ystar.shape[1]
    S = X.shape[0] // B
    scratch = np.empty(B)
    rows = 0
    for s in range(S):
        t = first + s
        lo = s * B
        eta = 0.0
        gsq = 0.0
        updates = 0
        for it in range(p.iterations):
            g[:] = 0.0
            STEP(fm, w, w0, X[lo:lo + B], J[lo:lo + B], Ystar[lo:lo + B], p, seed, t * B, it, out, g)
            nonzero = False
            for i in range(g.shape[0]):
                if g[i] != 0.0:
                    nonzero = True
                    break
            if nonzero:             # the update's kernel computes ‖g‖² itself (in a fixed order)
                eta, gsq = apply_update(rule, w, g, lr, G2)
                if not math.isfinite(gsq):
                    return s, rows
                updates += 1
        correct, reward, llstar, logp = count_step(counters, out, N, p.mode, p.neg, updates, scratch)
        if t % trace_every == 0:
            write_trace_row(trace[rows], t, J[lo], counters, llstar, logp, correct, reward, eta, gsq)
            rows += 1
    return S, rows


def step_driver(step_fn, name, cache=True):
    """The step loop over ``step_fn``, compiled lazily (on first call) as its own function ``name`` (cached on disk
    unless ``cache`` is False: a custom map's step closes over the user's φ, which Numba cannot cache)."""
    scope = dict(globals(), STEP=step_fn)
    fn = types.FunctionType(_run_steps.__code__, scope, name)
    fn.__qualname__ = name
    fn.__doc__ = f"``_run_steps`` over ``{getattr(step_fn, '__name__', step_fn)}``.\n" + _run_steps.__doc__
    return njit(cache=cache)(fn)
