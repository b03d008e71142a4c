"""Context streams and the teacher, keyed by context index so any chunking gives the same contexts.

Context ``t`` of a stream with seed ``seed`` is drawn from RNG stream ``t`` (see ``rng.seed_stream``), so
row ``b`` of a chunk starting at ``first`` is the same whatever the chunk size or resume point.
"""
import math

import numpy as np
from numba import njit, prange

from .rng import next_u64, randint, seed_stream, uniform
from .serial import serial_twin


@njit(cache=True)
def normal_pair(state):
    """Two independent standard normal draws (Marsaglia's polar method: one log, one sqrt and one division per
    pair, no trigonometry; a pair of uniforms is rejected with probability 1 − π/4)."""
    while True:
        v1 = 2.0 * uniform(state) - 1.0
        v2 = 2.0 * uniform(state) - 1.0
        s = v1 * v1 + v2 * v2
        if 0.0 < s < 1.0:
            f = math.sqrt(-2.0 * math.log(s) / s)
            return v1 * f, v2 * f


@njit(cache=True, parallel=True)
def rademacher_contexts(seed, first, X):
    """X[b] ∈ {±1}^d i.i.d. (float64[B, d]), context index ``first + b``."""
    B, d = X.shape
    states = np.empty((B, 4), np.uint64)      # per row; never allocate inside prange (Numba hoists it)
    for b in prange(B):
        state = states[b]
        seed_stream(seed, first + b, state)
        bits = np.uint64(0)
        for c in range(d):
            if c % 64 == 0:
                bits = next_u64(state)
            X[b, c] = 1.0 if (bits >> np.uint64(c % 64)) & np.uint64(1) else -1.0


@njit(cache=True, parallel=True)
def mixture_contexts(seed, first, n_centres, sigma, X, centre):
    """Gaussian-mixture contexts (paper §2): centre c ~ Unif{0..M−1}, x = e_c + ξ with ξ ~ N(0, σ²I) whose
    norm is clipped to ≤ σ, then x is rescaled to ‖x‖ = √d. Writes X (float64[B, d]) and the centre ids
    ``centre`` (int64[B]). Requires n_centres ≤ d. The noise comes in pairs from ``normal_pair``.
    """
    B, d = X.shape
    states = np.empty((B, 4), np.uint64)
    for b in prange(B):
        state = states[b]
        seed_stream(seed, first + b, state)
        c = randint(state, n_centres)
        centre[b] = c
        nrm = 0.0
        for t in range(0, d, 2):
            z0, z1 = normal_pair(state)
            z0 *= sigma
            X[b, t] = z0
            nrm += z0 * z0
            if t + 1 < d:
                z1 *= sigma
                X[b, t + 1] = z1
                nrm += z1 * z1
        nrm = math.sqrt(nrm)
        shrink = sigma / nrm if nrm > sigma else 1.0
        tot = 0.0
        for t in range(d):
            X[b, t] *= shrink
            if t == c:
                X[b, t] += 1.0
            tot += X[b, t] * X[b, t]
        scale = math.sqrt(d / tot)
        for t in range(d):
            X[b, t] *= scale


@njit(cache=True, parallel=True)
def teacher_responses(W1s, W2s, X, Y):
    """The teacher's responses (paper §2): y*_1 = argmax(W1* x), y*_i = argmax(W1* x + W2*[:, y*_{i−1}]).

    W1s float64[k, d], W2s float64[k, k] (the paper's layout), X float64[B, d]; writes Y (int64[B, N]).
    Ties go to the smallest token. The next token depends on the context and the previous token only, so each
    context memoises its transition table as the chain visits it: at most min(N, k) argmaxes of k per context,
    instead of N (the chain soon cycles through a few tokens). u = W1* x is summed over c in order for every a
    at once, four terms a pass (a loop LLVM vectorises; the same sums as one dot product per a, see
    ``features.prepare``); each argmax is written out in the
    token loop (a helper taking an array pays its reference count at every call).
    """
    B, N = Y.shape
    k, d = W1s.shape
    W1t = np.ascontiguousarray(W1s.T)          # [d, k]: row c holds W1*[:, c]
    W2t = np.ascontiguousarray(W2s.T)          # [k, k]: row prev holds W2*[:, prev]
    top = k - k % 4
    dtop = d - d % 4
    nblk = (B + 63) // 64
    us = np.empty((nblk, k))
    vs = np.empty((nblk, k))
    nexts = np.empty((nblk, k), np.int64)
    for blk in prange(nblk):
        u = us[blk]
        v = vs[blk]
        nxt = nexts[blk]
        for b in range(blk * 64, min(B, blk * 64 + 64)):
            for a in range(k):
                u[a] = 0.0
                nxt[a] = -1
            # four terms a pass, in order: features.prepare's sums, written out (calling it on the view X[b] made
            # the teacher markedly slower: the view's and arrays' reference counts at every row)
            for c in range(0, dtop, 4):
                x0 = X[b, c]
                x1 = X[b, c + 1]
                x2 = X[b, c + 2]
                x3 = X[b, c + 3]
                for a in range(k):
                    u[a] = (((u[a] + W1t[c, a] * x0) + W1t[c + 1, a] * x1) + W1t[c + 2, a] * x2
                            + W1t[c + 3, a] * x3)
            for c in range(dtop, d):
                xc = X[b, c]
                for a in range(k):
                    u[a] += W1t[c, a] * xc
            prev = -1                   # before the first token
            for i in range(N):
                if prev >= 0 and nxt[prev] >= 0:
                    prev = nxt[prev]
                    Y[b, i] = prev
                    continue
                # argmax_a v_a, v = u (+ W2*[:, prev]): the max as four independent chains (a ≡ 0..3 mod 4),
                # then the first a that reaches it (the index a strict "greater than" scan keeps; no NaN here)
                for a in range(k):
                    v[a] = u[a] if prev < 0 else u[a] + W2t[prev, a]
                m0 = -np.inf
                m1 = -np.inf
                m2 = -np.inf
                m3 = -np.inf
                for a in range(0, top, 4):
                    m0 = max(m0, v[a])
                    m1 = max(m1, v[a + 1])
                    m2 = max(m2, v[a + 2])
                    m3 = max(m3, v[a + 3])
                for a in range(top, k):
                    m0 = max(m0, v[a])
                m = max(max(m0, m1), max(m2, m3))
                arg = 0
                while v[arg] != m and arg < k - 1:
                    arg += 1
                if prev >= 0:
                    nxt[prev] = arg
                prev = arg
                Y[b, i] = prev


@njit(cache=True, parallel=True)
def uniform_ids(seed, first, M, out):
    """out[b] uniform in {0..M−1} from RNG stream ``first + b`` (int64[B])."""
    states = np.empty((out.shape[0], 4), np.uint64)
    for b in prange(out.shape[0]):
        state = states[b]
        seed_stream(seed, first + b, state)
        out[b] = randint(state, M)


rademacher_contexts_serial = serial_twin(rademacher_contexts)
mixture_contexts_serial = serial_twin(mixture_contexts)
teacher_responses_serial = serial_twin(teacher_responses)
uniform_ids_serial = serial_twin(uniform_ids)
