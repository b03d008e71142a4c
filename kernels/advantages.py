"""Advantages from a group of rewards: the one implementation of the baselines (docs/theory.md §4.5; TRL / verl names).

Used by the per-round PG kernel (the G samples of one round) and by the paper-mode batched learner (groups of
consecutive samples of a batch, or the whole batch for 'batch_mean').
"""
import math

from numba import njit

from .codes import GROUP_MEAN, LEAVE_ONE_OUT

STD_EPS = 1e-8


@njit(cache=True)
def group_advantages(r, size, baseline, std_scale, adv):
    """adv = baseline-corrected (and optionally std-scaled) rewards, per column.

    r float64[B, C] rewards (C = 1 for an outcome reward, N per-prefix rewards for a process reward); the rows
    form groups of ``size`` consecutive samples (the last group may be shorter). ``baseline``: NO_BASELINE,
    GROUP_MEAN (the group's mean) or LEAVE_ONE_OUT (the mean of the group's other members; none for a group
    of one). ``std_scale`` divides by the group's sample std (ddof 1) + 1e-8 in groups of two or more.
    adv float64[B, C] (written; may alias nothing).
    """
    B = r.shape[0]
    C = r.shape[1]
    for start in range(0, B, size):
        n = min(size, B - start)
        for c in range(C):
            mean = 0.0
            for s in range(start, start + n):
                mean += r[s, c]
            mean /= n
            sd = 0.0
            if std_scale and n > 1:
                for s in range(start, start + n):
                    sd += (r[s, c] - mean) ** 2
                sd = math.sqrt(sd / (n - 1))
            for s in range(start, start + n):
                a = r[s, c]
                if baseline == GROUP_MEAN:
                    a -= mean
                elif baseline == LEAVE_ONE_OUT and n > 1:
                    a -= (mean * n - r[s, c]) / (n - 1)
                if std_scale and n > 1:
                    a /= sd + STD_EPS
                adv[s, c] = a


@njit(cache=True)
def binary_advantages(n1, n0, neg, baseline, std_scale):
    """The advantages (a₁, a₀) that ``group_advantages`` gives a group of n1 rewards 1 and n0 rewards ``neg``
    (one column): with two reward values an advantage is a function of the reward, so a group's gradient is
    a₁·(Σ of the correct members' scores) + a₀·(Σ of the wrong ones'). The mean is exact (a sum of integers);
    the std is computed from the two counts."""
    n = n1 + n0
    a1 = 1.0
    a0 = neg
    if n == 0:
        return a1, a0
    mean = (n1 * 1.0 + n0 * neg) / n
    if baseline == GROUP_MEAN:
        a1 -= mean
        a0 -= mean
    elif baseline == LEAVE_ONE_OUT and n > 1:
        a1 -= (mean * n - 1.0) / (n - 1)
        a0 -= (mean * n - neg) / (n - 1)
    if std_scale and n > 1:
        sd = math.sqrt((n1 * (1.0 - mean) ** 2 + n0 * (neg - mean) ** 2) / (n - 1))
        a1 /= sd + STD_EPS
        a0 /= sd + STD_EPS
    return a1, a0
