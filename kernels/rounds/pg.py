"""PG with an outcome reward (docs/theory.md §4.2, REINFORCE): G samples from the behaviour q, rewards, a baseline over
the group, an optional clipped importance weight, and one update with the group-averaged score gradient.

``pg_bandit_round`` is the same algorithm fused for its commonest special case (see ``is_bandit``)."""
import math

import numpy as np
from numba import njit

from ..advantages import group_advantages
from ..codes import ADAGRAD, ADAPTIVE, NO_BASELINE, POLICY
from ..features import BIGRAM, prepare
from ..rng import uniform
from ..sequence import accumulate_grad, sample_sequence
from ..softmax import inverse_cdf, row_max, shifted_exp
from ..updates import adaptive_lr, clipped_importance_weight
from .common import equal, finish_update, reward_of, score_and_commit


@njit(cache=True)
def pg_round(p, fm, w, w0, G2, x, j, ystar, ws):
    """Sample 0 is the committed on-policy response when q = p_w; the others are fresh draws from q."""
    N = fm.N
    G = p.group_size
    llstar, logpc, correct = score_and_commit(fm, w, w0, x, j, ystar, ws)
    tokens = N
    for s in range(G):
        if s == 0 and p.behaviour == POLICY:
            ws.Ys[0, :] = ws.yc
            ws.lses[0, :] = ws.lsec
            ws.logps[0] = logpc
            ws.logqs[0] = logpc
        else:
            lp, lq = sample_sequence(fm, w, w0, x, j, p.behaviour, p.eps, ws.state, ws.Ys[s], ws.lses[s], ws.seq)
            ws.logps[s] = lp
            ws.logqs[s] = lq
            tokens += N
        ws.rewards[s, 0] = reward_of(equal(ws.Ys[s], ystar), p.pm1)
    mean_r = 0.0
    for s in range(G):
        mean_r += ws.rewards[s, 0]
    mean_r /= G
    group_advantages(ws.rewards, G, p.baseline, p.std_scale, ws.gadv)
    for s in range(G):
        a_s = ws.gadv[s, 0]
        if p.iw_clip > 0.0:
            a_s *= clipped_importance_weight(ws.logps[s], ws.logqs[s], p.iw_clip)
        if a_s != 0.0:
            for i in range(N):
                ws.adv[i] = a_s
            accumulate_grad(fm, w, x, j, ws.Ys[s], ws.adv, ws.lses[s], np.bool_(True), 1.0 / G, ws.g, ws.seq)
    eta, gsq = finish_update(p, w, ws.g, G2)
    return llstar, logpc, correct, mean_r, G, 0, tokens, eta, gsq


def is_bandit(p, fm):
    """N = 1 on-policy outcome-reward PG with one sample and no baseline, IW or Adagrad on a bigram map: the
    bandit-multiclass round that ``pg_bandit_round`` fuses (same draws, same update)."""
    return (fm.kind == BIGRAM and fm.N == 1 and p.behaviour == POLICY and p.group_size == 1
            and p.baseline == NO_BASELINE and p.iw_clip == 0.0 and p.rule != ADAGRAD)


@njit(cache=True)
def bandit_step(fm, w, x, ystar, state, pm1, rule, lr, u, e, coef):
    """One fused N = 1 round: scores u = xᵀW1 once, the exact log p(y*|x), one on-policy draw (one uniform,
    as the generic path), the reward, and the update w[W1] += η·x ⊗ coef written in place — no gradient
    buffer, no second or third pass over xᵀW1. ‖g‖² = ‖x‖²·‖coef‖² since g = x ⊗ coef.

    Returns (log p(y*|x), log p(ŷ|x), ŷ == y*, reward, η, ‖g‖²)."""
    k = fm.k
    d = x.shape[0]
    prepare(fm, w, x, 0, u)
    m = row_max(u)
    s = shifted_exp(u, m, e)
    lse = m + math.log(s)
    a = inverse_cdf(e, uniform(state) * s)
    correct = a == ystar
    reward = reward_of(correct, pm1)
    if reward == 0.0:
        return u[ystar] - lse, u[a] - lse, correct, reward, 0.0, 0.0
    c = -reward / s
    csq = 0.0
    for b in range(k):
        coef[b] = c * e[b]
    coef[a] += reward
    for b in range(k):
        csq += coef[b] * coef[b]
    xsq = 0.0
    for t in range(d):
        xsq += x[t] * x[t]
    gsq = xsq * csq
    eta = adaptive_lr(gsq) if rule == ADAPTIVE else lr
    for t in range(d):
        step = eta * x[t]
        base = t * k
        for b in range(k):
            w[base + b] += step * coef[b]
    return u[ystar] - lse, u[a] - lse, correct, reward, eta, gsq


@njit(cache=True)
def pg_bandit_round(p, fm, w, w0, G2, x, j, ystar, ws):
    """``pg_round`` for the case ``is_bandit`` accepts, through the fused ``bandit_step``."""
    llstar, logpc, correct, reward, eta, gsq = bandit_step(fm, w, x, ystar[0], ws.state, p.pm1, p.rule, p.lr,
                                                           ws.seq.u, ws.seq.e, ws.seq.coef)
    return llstar, logpc, correct, reward, 1, 0, 1, eta, gsq
