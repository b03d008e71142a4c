"""Feature maps as fused next-token logits: the φ tensor is never materialised.

A feature map is described to the kernels by ``fm = (kind, k, N, tscale)``, a plain tuple (see
:data:`FeatureMap`), plus the flat weight vector ``w`` (float64[D]) and one context per sequence: a float row
``x`` (float64[d]; empty for cells) and an integer id ``j`` (the cell index for cells; ignored by bigram).

Weight layouts (row-major, documented because users index them):

* **bigram**, D = d·k + k²: ``w[:d*k]`` is W1 as (d, k), ``W1[c, a]`` the weight of context coordinate c
  for token a; ``w[d*k:]`` is the transition block as (k, k) indexed ``[prev, a]`` (the paper's
  W2[a, prev], stored transposed so the O(k) per-token read is contiguous). Logits at position i (0-based):
  ``xᵀW1 + tscale·W2T[y_{i−1}, :]``, the second term absent at i = 0. ``tscale`` is the value of the
  transition feature (1 for raw features, 1/√2 with ``normalize``).
* **cells**, D = M·N·k: ``w`` is W as (M, N, k); logits at position i for context j are ``W[j, i, :]``.

Each map provides four primitives used by the generic sequence kernels:

``prepare(fm, w, x, j, u)``            per-sequence precompute into ``u`` (float64[k]): bigram ``xᵀW1``;
``token_logits(fm, w, x, j, u, y, i, out)``  logits of position i into ``out`` (float64[k]); ``y``
                                        (int64[N]) holds the prefix y_<i (entries ≥ i are not read);
``token_grad(fm, x, j, y, i, coef, cu, g)``  ``g += Σ_a coef[a]·φ(x, y_<i, a)`` except the part that
                                        factors through the context, which is summed into ``cu``;
``finish_grad(fm, x, j, cu, g)``       adds the factored part (bigram: ``x ⊗ cu``) once per sequence.
"""
from collections import namedtuple

from numba import njit

BIGRAM = 0
CELLS = 1
CUSTOM = 2

FeatureMap = namedtuple("FeatureMap", ["kind", "k", "N", "tscale"])
FeatureMap.__doc__ = """Kernel-side description of a feature map: (kind: int, k: int, N: int, tscale: float)."""


@njit(cache=True, inline="always")
def prepare(fm, w, x, j, u):
    """Per-sequence precompute. bigram: ``u = xᵀW1`` (O(d·k), once per sequence); cells: nothing.

    Each u_a is summed over c in order, ((u + x₀w₀) + x₁w₁) + …, four terms per pass over the k lanes: the same
    bits as one term per pass, with a quarter of the loads and stores of u (which bound the one-term loop)."""
    k = fm.k
    if fm.kind == BIGRAM:
        d = x.shape[0]
        top = d - d % 4
        for a in range(k):
            u[a] = 0.0
        for c in range(0, top, 4):
            x0 = x[c]
            x1 = x[c + 1]
            x2 = x[c + 2]
            x3 = x[c + 3]
            base = c * k
            for a in range(k):
                u[a] = (((u[a] + x0 * w[base + a]) + x1 * w[base + k + a]) + x2 * w[base + 2 * k + a]
                        + x3 * w[base + 3 * k + a])
        for c in range(top, d):
            xc = x[c]
            base = c * k
            for a in range(k):
                u[a] += xc * w[base + a]


@njit(cache=True, inline="always")
def token_logits(fm, w, x, j, u, y, i, out):
    """Logits of position ``i`` (0-based) given the prefix ``y[:i]``, O(k)."""
    k = fm.k
    if fm.kind == BIGRAM:
        if i == 0:
            for a in range(k):
                out[a] = u[a]
        else:
            base = x.shape[0] * k + y[i - 1] * k
            ts = fm.tscale
            for a in range(k):
                out[a] = u[a] + ts * w[base + a]
    else:
        base = (j * fm.N + i) * k
        for a in range(k):
            out[a] = w[base + a]


@njit(cache=True, inline="always")
def token_grad(fm, x, j, y, i, coef, cu, g):
    """Accumulate ``Σ_a coef[a]·φ(x, y_<i, a)`` of position ``i``: the context block into ``cu``, the rest into ``g``."""
    k = fm.k
    if fm.kind == BIGRAM:
        for a in range(k):
            cu[a] += coef[a]
        if i > 0:
            base = x.shape[0] * k + y[i - 1] * k
            ts = fm.tscale
            for a in range(k):
                g[base + a] += ts * coef[a]
    else:
        base = (j * fm.N + i) * k
        for a in range(k):
            g[base + a] += coef[a]


@njit(cache=True, inline="always")
def finish_grad(fm, x, j, cu, g):
    """Add the context block once per sequence: bigram ``g[W1] += x ⊗ cu``; cells nothing."""
    k = fm.k
    if fm.kind == BIGRAM:
        for c in range(x.shape[0]):
            xc = x[c]
            base = c * k
            for a in range(k):
                g[base + a] += xc * cu[a]

