"""PG with a process reward (docs/theory.md §4.4, Algorithm 2; details are a reconstruction), one round kernel per
variant:

* ``explore_round`` (Algorithm 2): check the on-policy rollout; if wrong, rebuild y* token by token from
  ½q₀ + ½Unif candidates (up to m_tok per position, one prefix check each) and learn the correct prefix found;
* ``binary_search_round``: as explore, but first keep the rollout's correct prefix, located by binary search
  over prefix checks (O(log N) queries);
* ``on_policy_round``: A_i = r_i (±1 or 0/1) on the on-policy rollout, N prefix checks.
"""
import numpy as np
from numba import njit

from ..features import prepare, token_logits
from ..rng import randint, uniform
from ..sequence import accumulate_grad
from ..softmax import sample_categorical
from .common import correct_prefix_len, finish_update, score_and_commit


@njit(cache=True)
def extend_prefix(fm, w0, x, j, ystar, L, m_tok, ws):
    """Extend the correct prefix y*_{<L} token by token: at each position draw up to ``m_tok`` candidates from
    ½q₀(·|x, prefix) + ½Unif(Y), one prefix check each, keep the first correct one; stop where none is.
    Returns (new L, prefix checks, tokens sampled)."""
    k = fm.k
    N = fm.N
    prm = 0
    tokens = 0
    prepare(fm, w0, x, j, ws.seq.u0)
    while L < N:
        token_logits(fm, w0, x, j, ws.seq.u0, ystar, L, ws.seq.lg0)
        hit = False
        for _ in range(m_tok):
            if uniform(ws.state) < 0.5:
                a = randint(ws.state, k)
            else:
                a, _z = sample_categorical(ws.seq.lg0, ws.seq.e, ws.state)
            tokens += 1
            prm += 1
            if a == ystar[L]:
                hit = True
                break
        if not hit:
            break
        L += 1
    return L, prm, tokens


@njit(cache=True)
def search_prefix(y, ystar):
    """The longest correct prefix of a rollout y known to be wrong as a whole, by binary search over prefix
    checks on (0, N−1]. Returns (its length, prefix checks)."""
    lo = 0
    hi = y.shape[0] - 1
    checks = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        checks += 1
        if correct_prefix_len(y[:mid], ystar[:mid]) == mid:
            lo = mid
        else:
            hi = mid - 1
    return lo, checks


@njit(cache=True)
def _learn_prefix(p, fm, w, G2, x, j, ystar, L, ws):
    """Update on the correct prefix y*_{≤L} (A_i = 1 for i < L, 0 after)."""
    N = fm.N
    if L > 0:
        for i in range(N):
            ws.adv[i] = 1.0 if i < L else 0.0
        accumulate_grad(fm, w, x, j, ystar, ws.adv, ws.tok, np.bool_(False), 1.0, ws.g, ws.seq)
    return finish_update(p, w, ws.g, G2)


@njit(cache=True)
def explore_round(p, fm, w, w0, G2, x, j, ystar, ws):
    N = fm.N
    llstar, logpc, correct = score_and_commit(fm, w, w0, x, j, ystar, ws)
    tokens = N
    prm = 1                       # check the whole rollout: one prefix check of length N
    L = N
    if not correct:
        L, checks, drawn = extend_prefix(fm, w0, x, j, ystar, np.int64(0), p.m_tok, ws)
        prm += checks
        tokens += drawn
    eta, gsq = _learn_prefix(p, fm, w, G2, x, j, ystar, L, ws)
    return llstar, logpc, correct, L / N, 0, prm, tokens, eta, gsq


@njit(cache=True)
def binary_search_round(p, fm, w, w0, G2, x, j, ystar, ws):
    N = fm.N
    llstar, logpc, correct = score_and_commit(fm, w, w0, x, j, ystar, ws)
    tokens = N
    prm = 1
    L = N
    if not correct:
        L, checks = search_prefix(ws.yc, ystar)
        L, more, drawn = extend_prefix(fm, w0, x, j, ystar, L, p.m_tok, ws)
        prm += checks + more
        tokens += drawn
    eta, gsq = _learn_prefix(p, fm, w, G2, x, j, ystar, L, ws)
    return llstar, logpc, correct, L / N, 0, prm, tokens, eta, gsq


@njit(cache=True)
def on_policy_round(p, fm, w, w0, G2, x, j, ystar, ws):
    N = fm.N
    llstar, logpc, correct = score_and_commit(fm, w, w0, x, j, ystar, ws)
    neg = -1.0 if p.pm1 else 0.0
    L = correct_prefix_len(ws.yc, ystar)
    for i in range(N):
        ws.adv[i] = 1.0 if i < L else neg
    accumulate_grad(fm, w, x, j, ws.yc, ws.adv, ws.lsec, np.bool_(True), 1.0, ws.g, ws.seq)
    eta, gsq = finish_update(p, w, ws.g, G2)
    return llstar, logpc, correct, L / N, 0, N, N, eta, gsq
