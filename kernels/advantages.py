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
