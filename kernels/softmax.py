"""Numerically stable log-softmax and categorical sampling over one row of k logits.

No kernel is compiled with ``fastmath``. A jitted caller carries its own copy of every callee it does not
inline, optimised again inside the caller's module, and which copy a call reaches depends on what the process
has loaded (compiled fresh, or from the on-disk cache). With value-changing flags (``reassoc``, ``contract``,
``arcp``, ``nsz``) LLVM may round the copies differently, so a warm cache gave other bits than a cold one
(tests/test_cache_determinism.py). Without them every copy computes the IEEE result of the source. The sums
over the k lanes are ``lane_sum``'s four partial sums in a fixed order instead: scalar, but four independent
chains, which wins back part of what vectorised reassociated sums gave; elementwise loops (exp, products)
still vectorise.
"""
import math

from numba import njit

from .mathfn import exp_nonpos
from .rng import uniform



@njit(cache=True, inline="always")
def lane_sum(v):
    """Σ_a v[a] (float64[n]) in a fixed order: four partial sums over a ≡ 0, 1, 2, 3 (mod 4), the tail added to
    the first, combined as (s0 + s1) + (s2 + s3). Four independent chains, so no reassociation is needed."""
    n = v.shape[0]
    top = n - n % 4
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for a in range(0, top, 4):
        s0 += v[a]
        s1 += v[a + 1]
        s2 += v[a + 2]
        s3 += v[a + 3]
    for a in range(top, n):
        s0 += v[a]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, inline="always")
def row_max(logits):
    m = logits[0]
    for a in range(1, logits.shape[0]):
        m = max(m, logits[a])
    return m


@njit(cache=True, inline="always")
def shifted_exp(logits, m, out):
    """out[a] = exp(logits[a] − m) (m ≥ max) and return Σ_a out[a] (``lane_sum`` order)."""
    for a in range(logits.shape[0]):
        out[a] = exp_nonpos(logits[a] - m)
    return lane_sum(out)


@njit(cache=True, inline="always")
def _sum_shifted_exp(logits, m):
    s = 0.0
    for a in range(logits.shape[0]):
        s += exp_nonpos(logits[a] - m)
    return s


@njit(cache=True, inline="always")
def logsumexp(logits):
    """log Σ_a exp(logits[a]) for float64[k], shifted by the max so ±1e4 logits stay finite."""
    m = row_max(logits)
    return m + math.log(_sum_shifted_exp(logits, m))


@njit(cache=True)
def log_softmax(logits, out):
    """out[a] = logits[a] − logsumexp(logits); returns the log-normaliser. ``out`` may alias ``logits``."""
    lse = logsumexp(logits)
    for a in range(logits.shape[0]):
        out[a] = logits[a] - lse
    return lse


@njit(cache=True, inline="always")
def inverse_cdf(weights, target):
    """First a with weights[0] + … + weights[a] > target (weights ≥ 0, 0 ≤ target < Σ weights).

    A plain early-exit scan: measured faster here than blocked two-level or unrolled searches at k = 32
    (their extra branches mispredict). If rounding leaves ``target`` at or above every partial sum, the last
    token with positive weight is returned, so a zero-probability token is never drawn.
    """
    k = weights.shape[0]
    acc = 0.0
    for a in range(k):
        acc += weights[a]
        if acc > target and weights[a] > 0.0:
            return a
    a = k - 1
    while a > 0 and weights[a] <= 0.0:
        a -= 1
    return a


@njit(cache=True)
def sample_categorical(logits, scratch, state):
    """Draw a ~ softmax(logits) by inverse CDF; return (a, log-normaliser).

    ``scratch`` (float64[k]) receives exp(logits − max); the log-normaliser comes from the same pass, so
    callers that also need log p(a) never recompute it.
    """
    m = row_max(logits)
    s = shifted_exp(logits, m, scratch)
    a = inverse_cdf(scratch, uniform(state) * s)
    return a, m + math.log(s)
