"""Learning-rate rules and the weight update (gradient *ascent* on Σ A log p).

Rules: ADAPTIVE η = 1/(4 + 2‖g‖²) (docs/theory.md §4: removes the factor N a constant rate pays), CONSTANT η = lr,
ADAGRAD per-coordinate ``G2 += g²; w += lr·g/(√G2 + 1e-10)`` (PyTorch's Adagrad with zero initial
accumulator, as in the paper's experiments).
"""
import math

from numba import njit

from .codes import ADAGRAD, ADAPTIVE, CONSTANT  # noqa: F401 - re-exported

ADAGRAD_EPS = 1e-10


@njit(cache=True)
def sq_norm(g):
    s = 0.0
    for t in range(g.shape[0]):
        s += g[t] * g[t]
    return s


@njit(cache=True)
def adaptive_lr(gsq):
    """η = 1 / (4 + 2‖g‖²) from the squared gradient norm."""
    return 1.0 / (4.0 + 2.0 * gsq)


@njit(cache=True)
def apply_update(rule, w, g, lr, G2):
    """w += η g under ``rule``; ``G2`` (float64[D]) is the Adagrad accumulator (unused otherwise).

    Returns (η, ‖g‖²); for Adagrad η is the base rate ``lr``.
    """
    gsq = sq_norm(g)
    if rule == ADAGRAD:
        for t in range(w.shape[0]):
            gt = g[t]
            G2[t] += gt * gt
            w[t] += lr * gt / (math.sqrt(G2[t]) + ADAGRAD_EPS)
        return lr, gsq
    eta = adaptive_lr(gsq) if rule == ADAPTIVE else lr
    for t in range(w.shape[0]):
        w[t] += eta * g[t]
    return eta, gsq


@njit(cache=True)
def clipped_importance_weight(logp, logq, zeta):
    """p/q clipped to [1/ζ, ζ] (ζ ≥ 1), computed in log space so tiny likelihoods never overflow."""
    lz = math.log(zeta)
    r = logp - logq
    if r > lz:
        r = lz
    elif r < -lz:
        r = -lz
    return math.exp(r)
