"""Bigram fast path for the batched kernels: the softmax numerator factorises.

With logits l_a = u_a + t·W2T[prev, a] (u = xᵀW1), exp(l_a − m) = Eu[a] · ET[prev, a] where
Eu = exp(u − max u) is computed once per sequence and ET = exp(t·W2T − rowmax) once per batch call (k²
exponentials shared by all B·N tokens). A token then costs k multiplies, a sum, the inverse-CDF search and
one log — no per-token exponentials, in sampling, likelihoods or gradients. If a token's shifted sum ever
falls below ``TINY`` (logits so extreme that the two shifts together leave nothing representable), that
token is recomputed by the exact generic path, so ±1e4 logits stay exact.
"""
import math

import numpy as np
from numba import njit

from .features import finish_grad, prepare, token_logits
from .mathfn import exp_nonpos
from .rng import uniform
from .sequence import any_nonzero
from .softmax import inverse_cdf, lane_sum, logsumexp, row_max, sample_categorical, shifted_exp

TINY = 1e-280


@njit(cache=True)
def bigram_tables(fm, w, d, fast):
    """(ET float64[k, k], rm float64[k]) of ``transition_exp`` when ``fast``, else unused placeholders."""
    k = fm.k
    ET = np.empty((k, k))
    rm = np.zeros(k)
    if fast:
        transition_exp(fm, w, d, ET, rm)
    return ET, rm


@njit(cache=True)
def transition_exp(fm, w, d, ET, rm):
    """ET[prev, a] = exp(t·W2T[prev, a] − rm[prev]) with rm[prev] the row max (ET float64[k, k], rm [k])."""
    k = fm.k
    ts = fm.tscale
    for prev in range(k):
        base = d * k + prev * k
        m = ts * w[base]
        for a in range(1, k):
            m = max(m, ts * w[base + a])
        rm[prev] = m
        for a in range(k):
            ET[prev, a] = exp_nonpos(ts * w[base + a] - m)


@njit(cache=True, inline="always")
def bigram_row(eu, ET, prev, i, e):
    """e = Eu ∘ ET[prev] (Eu itself at i = 0), the unnormalised next-token probabilities, and return Σ e: an
    elementwise loop LLVM vectorises, then its sum (``lane_sum`` order)."""
    if i == 0:
        for a in range(e.shape[0]):
            e[a] = eu[a]
    else:
        for a in range(e.shape[0]):
            e[a] = eu[a] * ET[prev, a]
    return lane_sum(e)


@njit(cache=True, inline="always")
def prepare_exp(fm, w, x, u, eu):
    """u = xᵀW1 (``features.prepare``) and Eu = exp(u − max u) into ``eu``; returns max u."""
    prepare(fm, w, x, 0, u)
    mu = row_max(u)
    shifted_exp(u, mu, eu)
    return mu


@njit(cache=True)
def sample_sequence_bigram(fm, w, x, ET, rm, state, y, lse, ws):
    """On-policy draw of ``y`` (int64[N]) for a bigram map; writes the per-token log-normalisers ``lse``
    (float64[N]) and returns log p_w(y|x). ``ws`` a ``sequence.SequenceWorkspace`` (Eu in ws.u0)."""
    u, eu, lg, e = ws.u, ws.u0, ws.lg, ws.e
    N = fm.N
    d = x.shape[0]
    k = fm.k
    ts = fm.tscale
    mu = prepare_exp(fm, w, x, u, eu)
    base = d * k
    logp = 0.0
    prev = 0
    for i in range(N):
        s = bigram_row(eu, ET, prev, i, e)
        if s > TINY:
            a = inverse_cdf(e, uniform(state) * s)
            if i == 0:
                z = mu + math.log(s)
                la = u[a]
            else:
                z = mu + math.log(s) + rm[prev]
                la = u[a] + ts * w[base + prev * k + a]
        else:
            token_logits(fm, w, x, 0, u, y, i, lg)
            a, z = sample_categorical(lg, e, state)
            la = lg[a]
        lse[i] = z
        logp += la - z
        y[i] = a
        prev = a
    return logp


@njit(cache=True)
def _exact_log_normaliser(fm, w, x, u, y, i, lg):
    """logsumexp of token i's exact logits, for the rare rows whose factorised sum is below ``TINY``."""
    token_logits(fm, w, x, 0, u, y, i, lg)
    return logsumexp(lg)


@njit(cache=True)
def sequence_loglik_bigram(fm, w, x, ET, rm, y, tok, ws):
    """``sequence_loglik`` for a bigram map through the factorised numerator: (total, min-token).

    A row's normaliser depends on the previous token only (Eu is fixed for the sequence), so each is computed
    the first time its previous token occurs (at most k + 1 per sequence; ``e`` holds the row being summed) and
    the token loop does O(1) work. Every per-token value is the expression the uncached loop evaluated, so the
    scores are the same bits. Only a row's first use calls helpers that take arrays (each such call pays its
    arrays' reference counts, ~17 ns per array: too much per token, nothing per row).
    """
    u, eu, lg, e = ws.u, ws.u0, ws.lg, ws.e
    N = fm.N
    d = x.shape[0]
    k = fm.k
    ts = fm.tscale
    mu = prepare_exp(fm, w, x, u, eu)
    base = d * k
    L = np.empty(k + 1)                       # slot k: the first token's row; slot a: the row after token a
    kind = np.zeros(k + 1, np.int8)           # 0 not computed, 1 factorised (L = log s), 2 exact (L = logsumexp)
    total = 0.0
    worst = math.inf
    prev = 0
    for i in range(N):
        r = k if i == 0 else prev
        if kind[r] == 0:
            for a in range(k):                # bigram_row, written out
                e[a] = eu[a] if i == 0 else eu[a] * ET[r, a]
            s = lane_sum(e)                   # once per row: its reference count is paid k + 1 times at most
            if s > TINY:
                L[r] = math.log(s)
                kind[r] = 1
            else:
                L[r] = _exact_log_normaliser(fm, w, x, u, y, i, lg)
                kind[r] = 2
        a = y[i]
        if kind[r] == 1:
            lp = u[a] - mu - L[r]
            if i > 0:
                lp += ts * w[base + prev * k + a] - rm[prev]
        elif i == 0:
            lp = u[a] - L[r]
        else:
            lp = (u[a] + ts * w[base + prev * k + a]) - L[r]
        tok[i] = lp
        total += lp
        worst = min(worst, lp)
        prev = a
    return total, worst


@njit(cache=True)
def accumulate_grad_bigram(fm, w, x, y, adv, ET, rm, scale, g, ws):
    """``accumulate_grad`` for a bigram map: p = Eu ∘ ET[prev] / s, no per-token exponentials."""
    u, eu, lg, e, coef, cu = ws.u, ws.u0, ws.lg, ws.e, ws.coef, ws.cu
    k = fm.k
    N = fm.N
    if not any_nonzero(adv):
        return
    prepare_exp(fm, w, x, u, eu)
    d = x.shape[0]
    ts = fm.tscale
    for a in range(k):
        cu[a] = 0.0
    prev = 0
    for i in range(N):
        ai = adv[i] * scale
        if ai != 0.0:
            if i == 0:
                for a in range(k):
                    e[a] = eu[a]
            else:
                for a in range(k):
                    e[a] = eu[a] * ET[prev, a]
            s = lane_sum(e)
            if s > TINY:
                c = -ai / s
                for a in range(k):
                    coef[a] = c * e[a]
            else:
                token_logits(fm, w, x, 0, u, y, i, lg)
                z = logsumexp(lg)
                for a in range(k):
                    coef[a] = -ai * exp_nonpos(lg[a] - z)
            coef[y[i]] += ai
            # token_grad written out: the context block sums into cu, the transition row into g
            for a in range(k):
                cu[a] += coef[a]
            if i > 0:
                base = d * k + prev * k
                for a in range(k):
                    g[base + a] += ts * coef[a]
        prev = y[i]
    finish_grad(fm, x, 0, cu, g)
