"""Plain NumPy / pure-Python references for the kernels (no numba anywhere in this file).

The references are written from the mathematical contract (docs/theory.md §1, §3, §4) and the documented layouts,
not from the kernels' code: φ(x, y_<i, a) is built *explicitly* as a dense D-vector, logits are ⟨w, φ⟩,
gradients are Σ_i A_i (φ(y_i) − Σ_a p_a φ(a)), and behaviour distributions are enumerated exactly.
"""
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
SM_M1 = 0xBF58476D1CE4E5B9
SM_M2 = 0x94D049BB133111EB
SEED_SALT = 0x632BE59BD9B4E019

# --------------------------------------------------------------------------------------------- RNG


def splitmix64(z):
    """SplitMix64 finaliser on Python ints modulo 2**64."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * SM_M1) & MASK64
    z = ((z ^ (z >> 27)) * SM_M2) & MASK64
    return z ^ (z >> 31)


def seed_stream(seed, stream):
    """The documented keyed derivation: hash (seed, stream) twice through SplitMix64, then draw 4 words."""
    key = splitmix64(seed * GOLDEN + SEED_SALT)
    key = splitmix64(key ^ ((stream * SM_M1 + GOLDEN) & MASK64))
    out = []
    for _ in range(4):
        key = (key + GOLDEN) & MASK64
        out.append(splitmix64(key))
    return out


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & MASK64


class Xoshiro256pp:
    """xoshiro256++ (Blackman & Vigna) on Python ints."""

    def __init__(self, state):
        self.s = [int(v) & MASK64 for v in state]

    def next_u64(self):
        s0, s1, s2, s3 = self.s
        result = (_rotl((s0 + s3) & MASK64, 23) + s0) & MASK64
        t = (s1 << 17) & MASK64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 45)
        self.s = [s0, s1, s2, s3]
        return result

    def uniform(self):
        return (self.next_u64() >> 11) * 2.0 ** -53

    def randint(self, n):
        return min(int(self.uniform() * n), n - 1)

    def state_array(self):
        return np.array(self.s, dtype=np.uint64)


def chisquare_pvalue(counts, probs, min_expected=5.0):
    """Pearson χ² goodness-of-fit p-value of ``counts`` against exact ``probs``.

    Cells with zero probability must have zero counts (asserted) and are dropped; cells whose expected count
    is below ``min_expected`` are pooled into one so the χ² approximation stays honest.
    """
    counts = np.asarray(counts, dtype=float)
    probs = np.asarray(probs, dtype=float)
    impossible = probs <= 0.0
    assert counts[impossible].sum() == 0, "a zero-probability outcome was drawn"
    counts = counts[~impossible]
    probs = probs[~impossible]
    n = counts.sum()
    expected = probs / probs.sum() * n
    keep = expected >= min_expected
    obs = list(counts[keep])
    exp = list(expected[keep])
    if (~keep).any():
        obs.append(counts[~keep].sum())
        exp.append(expected[~keep].sum())
    obs = np.array(obs)
    exp = np.array(exp)
    exp *= obs.sum() / exp.sum()
    if len(obs) < 2:
        return 1.0
    return stats.chisquare(obs, exp).pvalue


# ------------------------------------------------------------------------------------- math / softmax


def log_softmax(logits):
    """(log-probabilities, log-normaliser) of one row, max-shifted."""
    logits = np.asarray(logits, dtype=float)
    m = np.max(logits)
    z = m + np.log(np.sum(np.exp(logits - m)))
    return logits - z, z


def logsumexp(logits):
    return log_softmax(logits)[1]


# ------------------------------------------------------------------------------------- feature maps


@dataclass
class Model:
    """A feature map in the terms of docs/theory.md §1. kind: 'bigram' or 'cells'."""

    kind: str
    k: int
    N: int
    tscale: float = 1.0
    d: int = 0
    M: int = 0

    @property
    def D(self):
        if self.kind == "bigram":
            return self.d * self.k + self.k * self.k
        return self.M * self.N * self.k

    def phi(self, x, j, i, prev, a):
        """Dense φ(x, y_<i, a) ∈ R^D for 0-based position i whose previous token is ``prev``."""
        v = np.zeros(self.D)
        self._fill_phi(v, x, j, i, prev, a)
        return v

    def _fill_phi(self, v, x, j, i, prev, a):
        k, d = self.k, self.d
        if self.kind == "bigram":
            # vec(x e_aᵀ) in the (d, k) row-major layout: entry [c, a] = x_c
            W1 = v[: d * k].reshape(d, k)
            W1[:, a] = x
            # tscale·vec(e_prev e_aᵀ) in the (k, k) [prev, a] layout; absent at the first position
            W2T = v[d * k:].reshape(k, k)
            if i > 0:
                W2T[prev, a] = self.tscale
        else:
            cells = v.reshape(self.M, self.N, k)
            cells[j, i, a] = 1.0

    def phi_matrix(self, x, j, i, prev):
        """(k, D): row a is φ(x, y_<i, a)."""
        P = np.zeros((self.k, self.D))
        for a in range(self.k):
            self._fill_phi(P[a], x, j, i, prev, a)
        return P


def position_logits(model, w, x, j, y):
    """(N, k) logits ⟨w, φ(x, y_<i, a)⟩ along response y."""
    out = np.empty((model.N, model.k))
    prev = 0
    for i in range(model.N):
        out[i] = model.phi_matrix(x, j, i, prev) @ w
        prev = int(y[i])
    return out


def sequence_loglik(model, w, x, j, y):
    """(log p_w(y|x), min_i log p_w(y_i|·), per-token log-probs (N,), per-token log-normalisers (N,))."""
    L = position_logits(model, w, x, j, y)
    tok = np.empty(model.N)
    lse = np.empty(model.N)
    for i in range(model.N):
        lp, z = log_softmax(L[i])
        tok[i] = lp[int(y[i])]
        lse[i] = z
    return float(np.sum(tok)), float(np.min(tok)), tok, lse


def token_probs(model, w, x, j, y):
    """(N, k) next-token distributions p_w(·|x, y_<i) along y."""
    L = position_logits(model, w, x, j, y)
    return np.stack([np.exp(log_softmax(row)[0]) for row in L])


def score_grad(model, w, x, j, y, adv):
    """Σ_i A_i (φ(y_i) − Σ_a p_a φ(a)) with dense φ."""
    g = np.zeros(model.D)
    prev = 0
    for i in range(model.N):
        Phi = model.phi_matrix(x, j, i, prev)
        p = np.exp(log_softmax(Phi @ w)[0])
        g += adv[i] * (Phi[int(y[i])] - p @ Phi)
        prev = int(y[i])
    return g


def weighted_loglik(model, w, x, j, y, adv):
    """Σ_i A_i log p_w(y_i | x, y_<i): the objective whose gradient ``score_grad`` is."""
    return float(np.dot(adv, sequence_loglik(model, w, x, j, y)[2]))


def finite_difference_grad(f, w, h=1e-5):
    g = np.zeros_like(w)
    for t in range(w.shape[0]):
        e = np.zeros_like(w)
        e[t] = h
        g[t] = (f(w + e) - f(w - e)) / (2 * h)
    return g


# ------------------------------------------------------------------------------- behaviour policies


def all_responses(k, N):
    """All k^N responses, lexicographic (index = Σ_i y_i k^{N−1−i})."""
    return np.array(list(itertools.product(range(k), repeat=N)), dtype=np.int64).reshape(-1, N)


def response_index(Y, k):
    idx = np.zeros(Y.shape[0], dtype=np.int64)
    for i in range(Y.shape[1]):
        idx = idx * k + Y[:, i]
    return idx


def behaviour_logq(model, w, w0, x, j, y, behaviour, eps=0.0):
    """Exact log q(y|x) of behaviour 'policy' | 'uniform' | 'base' | 'mixture' | 'eps_mixture'."""
    k, N = model.k, model.N
    if behaviour == "policy":
        return sequence_loglik(model, w, x, j, y)[0]
    if behaviour == "uniform":
        return -N * math.log(k)
    if behaviour == "base":
        return sequence_loglik(model, w0, x, j, y)[0]
    if behaviour == "mixture":  # ½ q0 + ½ Unif per whole sequence
        return float(np.logaddexp(math.log(0.5) + sequence_loglik(model, w0, x, j, y)[0],
                                  math.log(0.5) - N * math.log(k)))
    if behaviour == "eps_mixture":  # per token (1−ε) p_w + ε/k
        P = token_probs(model, w, x, j, y)
        q = (1.0 - eps) * P[np.arange(N), y] + eps / k
        return float(np.sum(np.log(q)))
    raise ValueError(behaviour)


def behaviour_distribution(model, w, w0, x, j, behaviour, eps=0.0):
    """Exact probabilities of every response in ``all_responses`` order."""
    Y = all_responses(model.k, model.N)
    return np.exp([behaviour_logq(model, w, w0, x, j, y, behaviour, eps) for y in Y])


# --------------------------------------------------------------------------------------- updates


def adaptive_update(w, g):
    gsq = float(np.sum(g * g))
    eta = 1.0 / (4.0 + 2.0 * gsq)
    return w + eta * g, eta, gsq


def constant_update(w, g, lr):
    return w + lr * g, lr, float(np.sum(g * g))


def adagrad_update(w, g, lr, G2):
    G2 = G2 + g * g
    return w + lr * g / (np.sqrt(G2) + 1e-10), G2


def clipped_importance_weight(logp, logq, zeta):
    with np.errstate(over="ignore"):
        return float(np.clip(np.exp(logp - logq), 1.0 / zeta, zeta))
