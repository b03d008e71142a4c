"""The chunk loop shared by every per-round algorithm, compiled once per algorithm.

``chunk_driver(round_fn, name)`` returns ``run(p, fm, w, w0, G2, X, J, Ystar, first, seed, counters,
trace_every, trace)``: it plays rounds ``first … first+R−1`` of a stream with ``round_fn``. Round t draws all its
randomness from RNG stream t of ``seed``, so a run cut into chunks of any size, or resumed at any chunk
boundary, replays the same rounds bit for bit.

Each driver is the same code compiled under its own name with ``ROUND`` bound to its round kernel, so it has its
own on-disk cache entry and a run compiles only the algorithm it uses. (A generic loop taking the round kernel
as a first-class argument would compile the same way but never hits Numba's on-disk cache: a dispatcher
argument's type is keyed on the function object.)
"""
import math
import types

from numba import njit

from ..counters import add_counts, write_trace_row
from ..rng import seed_stream
from .common import round_workspace

ROUND = None  # bound per driver by ``chunk_driver``


@njit(cache=True)
def count_round(counters, outcome):
    """Add one round's outcome (a round kernel's return tuple) to the cumulative counters float64[NCOUNT]."""
    llstar, _logpc, correct, _reward, orm, prm, tokens, _eta, gsq = outcome
    add_counts(counters, 1.0, float(orm), float(prm), float(tokens), 0.0 if correct else 1.0, 1.0 - math.exp(llstar),
               1.0 if gsq > 0.0 else 0.0)


@njit(cache=True)
def write_round_row(row, t, j, counters, outcome):
    """The trace row of round t (``counters.write_trace_row``) from its outcome tuple."""
    llstar, logpc, correct, reward, _orm, _prm, _tokens, eta, gsq = outcome
    write_trace_row(row, t, j, counters, llstar, logpc, 1.0 if correct else 0.0, reward, eta, gsq)


def _run_chunk(p, fm, w, w0, G2, X, J, Ystar, first, seed, counters, trace_every, trace):
    """Play len(X) rounds; return the number of trace rows written.

    p: RoundParams. w float64[D] (updated), w0 float64[D] base model, G2 float64[D] Adagrad state (updated).
    X float64[R, d], J int64[R], Ystar int64[R, N]: the chunk's contexts and correct responses.
    first: global index of the chunk's first round; seed: the run's sampling seed.
    counters float64[NCOUNT] (updated); trace float64[≥ R // trace_every + 1, NTRACE]: a row is written for
    every round t with t % trace_every == 0, holding the counters after that round.
    """
    ws = round_workspace(fm, w.shape[0], p.group_size)
    rows = 0
    for r in range(X.shape[0]):
        t = first + r
        seed_stream(seed, t, ws.state)
        outcome = ROUND(p, fm, w, w0, G2, X[r], J[r], Ystar[r], ws)
        count_round(counters, outcome)
        if t % trace_every == 0:
            write_round_row(trace[rows], t, J[r], counters, outcome)
            rows += 1
    return rows


def chunk_driver(round_fn, name):
    """The chunk loop over ``round_fn``, compiled lazily (on first call) as its own cached function ``name``."""
    scope = dict(globals(), ROUND=round_fn)
    fn = types.FunctionType(_run_chunk.__code__, scope, name)
    fn.__qualname__ = name
    fn.__doc__ = f"``_run_chunk`` over ``{getattr(round_fn, '__name__', round_fn)}``.\n" + _run_chunk.__doc__
    return njit(cache=True)(fn)
