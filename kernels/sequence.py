"""Per-sequence kernels, generic over the feature map: sampling, exact log-likelihood and its gradient.

These are the building blocks users call from their own ``@njit`` loops. Every array argument is caller
owned; ``ws`` is a ``SequenceWorkspace`` (``sequence_workspace(k)`` allocates one) so that nothing is allocated per
sequence. Arguments shared by all functions:

    fm     feature map tuple (kind, k, N, tscale), see ``features``
    w      float64[D] policy weights
    x      float64[d] context row (empty for cells);  j  int, context id (cell index for cells)
    y      int64[N]   a response
    ws     SequenceWorkspace: float64[k] scratch rows, overwritten
"""
import math
from collections import namedtuple

import numpy as np
from numba import njit

from .codes import BASE, EPS_MIXTURE, MIXTURE, POLICY, UNIFORM
from .features import finish_grad, prepare, token_grad, token_logits
from .mathfn import exp_nonpos
from .rng import randint, uniform
from .softmax import logsumexp, sample_categorical

LOG_HALF = math.log(0.5)

SequenceWorkspace = namedtuple("SequenceWorkspace", ["u", "u0", "lg", "lg0", "e", "coef", "cu"])
SequenceWorkspace.__doc__ = """Scratch of the per-sequence kernels, float64[k] each: u (the policy's context part
of the logits; the bigram kernels' xᵀW1), u0 (the base's; the bigram kernels' exp(u − max u)), lg, lg0 (a position's
logits), e (exponentials), coef, cu (gradient coefficients). Allocate with ``sequence_workspace(k)``; a batch kernel
gives each block of rows its own."""


@njit(cache=True)
def sequence_workspace(k):
    """A fresh ``SequenceWorkspace`` for a vocabulary of k tokens."""
    return SequenceWorkspace(np.empty(k), np.empty(k), np.empty(k), np.empty(k), np.empty(k), np.empty(k),
                             np.empty(k))


@njit(cache=True)
def logaddexp(a, b):
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))


@njit(cache=True)
def any_nonzero(adv):
    """True if some advantage is nonzero (a sequence whose advantages are all 0 adds nothing)."""
    for i in range(adv.shape[0]):
        if adv[i] != 0.0:
            return True
    return False


@njit(cache=True)
def sample_sequence(fm, w, w0, x, j, behaviour, eps, state, y, lse, ws):
    """Draw a response ``y`` (int64[N], written) from behaviour ``behaviour`` and score it.

    ``w0`` is the base model (read by BASE and MIXTURE only), ``eps`` the token mixing weight of
    EPS_MIXTURE, ``state`` the stream's uint64[4] RNG state (advanced). ``lse`` (float64[N], written) gets
    the policy's per-token log-normalisers, which ``accumulate_grad`` reuses.

    Returns (log p_w(y|x), log q(y|x)) for the sampled response.
    """
    u, u0, lg, lg0, e = ws.u, ws.u0, ws.lg, ws.lg0, ws.e
    k = fm.k
    N = fm.N
    logk = math.log(k)
    prepare(fm, w, x, j, u)
    need_base = behaviour == BASE or behaviour == MIXTURE
    if need_base:
        prepare(fm, w0, x, j, u0)
    from_base = behaviour == BASE
    if behaviour == MIXTURE:
        from_base = uniform(state) < 0.5
    logp = 0.0
    logq = 0.0
    logq0 = 0.0
    for i in range(N):
        token_logits(fm, w, x, j, u, y, i, lg)
        if behaviour == POLICY:
            a, z = sample_categorical(lg, e, state)
            lse[i] = z
            logq += lg[a] - z
        else:
            z = logsumexp(lg)
            lse[i] = z
            if need_base:
                token_logits(fm, w0, x, j, u0, y, i, lg0)
                if from_base:
                    a, z0 = sample_categorical(lg0, e, state)
                else:
                    a = randint(state, k)
                    z0 = logsumexp(lg0)
                logq0 += lg0[a] - z0
            elif behaviour == UNIFORM:
                a = randint(state, k)
            else:  # EPS_MIXTURE
                if uniform(state) < eps:
                    a = randint(state, k)
                else:
                    a, _ = sample_categorical(lg, e, state)
                if eps >= 1.0:
                    logq -= logk
                elif eps > 0.0:
                    logq += logaddexp(math.log1p(-eps) + lg[a] - z, math.log(eps) - logk)
                else:
                    logq += lg[a] - z
        logp += lg[a] - lse[i]
        y[i] = a
    if behaviour == UNIFORM:
        logq = -N * logk
    elif behaviour == BASE:
        logq = logq0
    elif behaviour == MIXTURE:
        logq = logaddexp(LOG_HALF + logq0, LOG_HALF - N * logk)
    return logp, logq


@njit(cache=True)
def sequence_loglik(fm, w, x, j, y, tok, ws):
    """Exact log p_w(y|x) of a given response.

    Writes the per-token log-probs log p_w(y_i|x, y_<i) into ``tok`` (float64[N]) and returns
    (sequence log-likelihood, min-token log-prob). Pure log space: no underflow for any N.
    """
    u, lg = ws.u, ws.lg
    N = fm.N
    prepare(fm, w, x, j, u)
    total = 0.0
    worst = math.inf
    for i in range(N):
        token_logits(fm, w, x, j, u, y, i, lg)
        lp = lg[y[i]] - logsumexp(lg)
        tok[i] = lp
        total += lp
        if lp < worst:
            worst = lp
    return total, worst


@njit(cache=True)
def prefix_entropy(fm, w, x, j, y, ws):
    """Σ_i H(p_w(·|x, y_<i)) in nats: the exact entropies of the policy's next-token distributions along the
    given response's prefixes (with y = y*, the token-level entropy along the correct path)."""
    u, lg = ws.u, ws.lg
    prepare(fm, w, x, j, u)
    total = 0.0
    for i in range(fm.N):
        token_logits(fm, w, x, j, u, y, i, lg)
        z = logsumexp(lg)
        h = 0.0
        for a in range(lg.shape[0]):
            lp = lg[a] - z
            h -= math.exp(lp) * lp
        total += h
    return total


@njit(cache=True, inline="always")
def scaled_probs(lg, z, c, out):
    """out[a] = c · exp(lg[a] − z) with z the log-normaliser of ``lg``."""
    for a in range(lg.shape[0]):
        out[a] = c * exp_nonpos(lg[a] - z)


@njit(cache=True)
def accumulate_grad(fm, w, x, j, y, adv, lse, have_lse, scale, g, ws):
    """g += scale · Σ_i adv[i] · ∇_w log p_w(y_i | x, y_<i)   (the score-function / REINFORCE gradient).

    ``adv`` (float64[N]) is the per-token advantage A_i (broadcast sequence reward for the outcome reward,
    prefix rewards for the process reward, 1 for supervised log-likelihood). Tokens with A_i = 0 cost
    nothing. If ``have_lse`` the per-token log-normalisers in ``lse`` (float64[N], from ``sample_sequence``
    with the same ``w``) are reused instead of recomputed.
    """
    u, lg, coef, cu = ws.u, ws.lg, ws.coef, ws.cu
    k = fm.k
    N = fm.N
    if not any_nonzero(adv):
        return
    prepare(fm, w, x, j, u)
    for a in range(k):
        cu[a] = 0.0
    for i in range(N):
        ai = adv[i] * scale
        if ai != 0.0:
            token_logits(fm, w, x, j, u, y, i, lg)
            z = lse[i] if have_lse else logsumexp(lg)
            scaled_probs(lg, z, -ai, coef)
            coef[y[i]] += ai
            token_grad(fm, x, j, y, i, coef, cu, g)
    finish_grad(fm, x, j, cu, g)


@njit(cache=True)
def correct_path_gap(fm, w, x, j, ystar, ws):
    """min over positions i and wrong tokens a ≠ y*_i of the score gap
    ⟨w, φ(x, y*_<i, y*_i) − φ(x, y*_<i, a)⟩ along the correct path ``ystar`` (int64[N])."""
    u, lg = ws.u, ws.lg
    k = fm.k
    N = fm.N
    prepare(fm, w, x, j, u)
    gap = math.inf
    for i in range(N):
        token_logits(fm, w, x, j, u, ystar, i, lg)
        top = lg[ystar[i]]
        for a in range(k):
            if a != ystar[i] and top - lg[a] < gap:
                gap = top - lg[a]
    return gap
