"""Counting and trace rows: what every chunk driver writes, per-round (``rounds.driver``) and batched
(``steps.driver``) alike, defined once.

A *round of the trace* is one round of a per-round algorithm, or one step (B responses) of a batched one.
``add_counts`` adds its outcome to the cumulative counters (float64[NCOUNT], ``codes.COUNTERS``) and
``write_trace_row`` writes its row (float64[NTRACE], columns as ``codes.TRACE_SCHEMA``).
"""
import math

import numpy as np
from numba import njit

from .codes import (C_MIST_EXPECTED, C_MIST_SAMPLED, C_ORM, C_PRM, C_ROUNDS, C_TOKENS, C_UPDATES, T_CONTEXT,
                    T_CORRECT, T_GRAD_NORM, T_LOGLIK_STAR, T_LR, T_MIST_EXPECTED, T_MIST_SAMPLED, T_ORM, T_PRM,
                    T_REWARD, T_ROUND, T_SAMPLED_LOGPROB, T_TOKENS, T_UPDATES)

PAIRWISE_BLOCK = 128    # NumPy's PW_BLOCKSIZE


@njit(cache=True)
def _pairwise_block(a, lo, n):
    """NumPy's pairwise sum of a[lo:lo+n] for n ≤ PAIRWISE_BLOCK: eight interleaved partial sums, then the rest."""
    if n < 8:
        s = 0.0
        for i in range(lo, lo + n):
            s += a[i]
        return s
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    stop = n - n % 8
    while i < stop:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        s += a[lo + i]
        i += 1
    return s


@njit(cache=True)
def pairwise_sum(a):
    """Σ a (float64[n]) in NumPy's pairwise order, so that a kernel's batch mean equals ``np.mean``'s bit for bit
    (and the batched trace columns did not move when the step's counting moved into a kernel). Above
    PAIRWISE_BLOCK elements NumPy splits at half the length rounded down to a multiple of 8 and adds the halves'
    sums; the split is walked here with an explicit stack (a recursive function does not cache on disk)."""
    n = a.shape[0]
    if n <= PAIRWISE_BLOCK:
        return _pairwise_block(a, 0, n)
    los = np.empty(64, np.int64)        # depth ≤ log2(n / 128) + 1
    ns = np.empty(64, np.int64)
    stage = np.zeros(64, np.int64)      # 0: split next, 1: left half done, 2: both done
    left = np.empty(64)
    los[0] = 0
    ns[0] = n
    top = 0
    ret = 0.0
    while top >= 0:
        m = ns[top]
        if m <= PAIRWISE_BLOCK:
            ret = _pairwise_block(a, los[top], m)
            top -= 1
            continue
        half = m // 2
        half -= half % 8
        if stage[top] == 0:
            stage[top] = 1
            child_lo, child_n = los[top], half
        elif stage[top] == 1:
            left[top] = ret
            stage[top] = 2
            child_lo, child_n = los[top] + half, m - half
        else:
            ret = left[top] + ret
            top -= 1
            continue
        top += 1
        los[top] = child_lo
        ns[top] = child_n
        stage[top] = 0
    return ret


@njit(cache=True)
def add_counts(counters, rounds, orm, prm, tokens, mistakes_sampled, mistakes_expected, updated):
    """Add one trace round's outcome to the cumulative counters: its rounds (1), reward queries, sampled tokens,
    sampled and expected mistakes, and its updates (1 or 0 for a round; the number a batched step applied, more
    than one under ``num_iterations``). Every argument is a float64, so the kernel compiles once for all its
    callers (an int or bool constant would be typed as a literal and compile a copy per value)."""
    counters[C_MIST_EXPECTED] += mistakes_expected
    counters[C_MIST_SAMPLED] += mistakes_sampled
    counters[C_UPDATES] += updated
    counters[C_ROUNDS] += rounds
    counters[C_ORM] += orm
    counters[C_PRM] += prm
    counters[C_TOKENS] += tokens


@njit(cache=True)
def write_trace_row(row, t, j, counters, llstar, logpc, correct, reward, eta, gsq):
    """One trace row (float64[NTRACE]): round t, its first context id j, its outcome (log p(y*|x), the committed
    or sampled response's log-probability, the fraction correct, the mean reward; batch means for a step), the
    counters after it, the step size and ‖g‖ of its update."""
    row[T_ROUND] = t
    row[T_CONTEXT] = j
    row[T_REWARD] = reward
    row[T_CORRECT] = correct
    row[T_ORM] = counters[C_ORM]
    row[T_PRM] = counters[C_PRM]
    row[T_TOKENS] = counters[C_TOKENS]
    row[T_UPDATES] = counters[C_UPDATES]
    row[T_MIST_SAMPLED] = counters[C_MIST_SAMPLED]
    row[T_MIST_EXPECTED] = counters[C_MIST_EXPECTED]
    row[T_LOGLIK_STAR] = llstar
    row[T_SAMPLED_LOGPROB] = logpc
    row[T_LR] = eta
    row[T_GRAD_NORM] = math.sqrt(gsq)
