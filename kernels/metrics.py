"""Exact evaluation metrics of RLVR practice from the log-likelihoods of the correct responses (docs/theory.md
§3.5): pass@k over a grid of k, and the support of a policy against a base at a likelihood threshold.

Every quantity is a function of ℓ_x = log p(y*(x)|x) on the held-out contexts — exact here, where LLM studies
must sample — and is computed in log space: p can be 10⁻²⁰⁰ and k can be 2²⁰, so 1 − (1 − p)^k is evaluated as
−expm1(k·log(1 − p)) with log(1 − p) = log1mexp(ℓ) taken on the accurate branch."""
import math

from numba import njit


@njit(cache=True)
def log1mexp(x):
    """log(1 − eˣ) for x ≤ 0 (−inf at x = 0), accurate on both sides of x = −ln 2."""
    if x >= 0.0:
        return -math.inf
    if x > -0.6931471805599453:
        return math.log(-math.expm1(x))
    return math.log1p(-math.exp(x))


@njit(cache=True)
def pass_at_k(ll, ks, out):
    """out[i] = mean over contexts x of 1 − (1 − p_x)^{ks[i]}, p_x = exp(ll[x]): the chance that at least one of
    ks[i] independent samples is correct, exactly. ll float64[n], ks float64[K] (integers ≥ 1), out float64[K]."""
    K = ks.shape[0]
    for i in range(K):
        out[i] = 0.0
    n = ll.shape[0]
    for x in range(n):
        miss = log1mexp(ll[x])              # log(1 − p_x)
        for i in range(K):
            out[i] += -math.expm1(ks[i] * miss) if miss > -math.inf else 1.0
    for i in range(K):
        out[i] /= n


@njit(cache=True)
def support_fractions(ll_base, ll, log_eps):
    """Fractions of the contexts whose y* is in the log_eps-support (log p ≥ log_eps) of both the base and the
    policy (preserved), of the base only (shrunk), of the policy only (expanded)."""
    n = ll.shape[0]
    kept = 0
    lost = 0
    gained = 0
    for x in range(n):
        b = ll_base[x] >= log_eps
        q = ll[x] >= log_eps
        if b and q:
            kept += 1
        elif b:
            lost += 1
        elif q:
            gained += 1
    return kept / n, lost / n, gained / n
