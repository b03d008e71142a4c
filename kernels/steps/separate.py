"""The batched step for every feature map and reward: the general kernel of the batched-step table.

``separate_step`` has the signature and outputs of ``fused.pg_step`` and computes the same step from the
per-sequence kernels, one stage at a time: y*'s exact log-likelihood and the on-policy sample (one parallel
loop over fixed blocks of ``batch.BLOCK`` rows), the rewards and their advantages (``group_advantages``: outcome
rewards per row, process rewards per prefix, each prefix position its own column), then the gradient (a second
parallel loop, per-block accumulators summed in block order). It covers what the fused step does not: the
cells and custom maps (``custom.custom_kernels`` rebinds it around a user's φ) and process rewards with a
baseline. Each stage is computed exactly as ``loglik_batch``, ``sample_batch`` and ``grad_batch`` compute it,
so the step equals those three kernels called in turn, bit for bit, for any number of threads.
"""
import numpy as np
from numba import njit, prange

from ..advantages import group_advantages
from ..batch import BLOCK, block_scratch, block_workspace, n_blocks
from ..bigram import accumulate_grad_bigram, bigram_tables, sample_sequence_bigram, sequence_loglik_bigram
from ..codes import NO_BASELINE, POLICY, STEP_FIT, STEP_PRM, STEP_SUPERVISED
from ..features import BIGRAM
from ..rng import seed_stream
from ..sequence import accumulate_grad, sample_sequence, sequence_loglik
from ..serial import serial_twin


@njit(cache=True)
def baseline_advantages(r, p, adv):
    """adv float64[B, C] (written) = the rewards r float64[B, C] (one column per outcome, or per prefix position)
    baseline-corrected (and std-scaled) per column over the scope of ``p`` (``StepParams``): groups of ``p.group``
    consecutive rows, or the whole batch when p.group ≤ 1 (so 'loo' with one sample per context leaves one out
    of the whole batch). The rewards themselves under NO_BASELINE."""
    if p.baseline == NO_BASELINE:
        adv[:, :] = r
    else:
        group_advantages(r, r.shape[0] if p.group <= 1 else p.group, p.baseline, p.std_scale, adv)


@njit(cache=True)
def step_advantages(Y, Ystar, prefix, p, adv):
    """adv float64[B, N] (written): each token's advantage for the gradient of a non-fused step. Supervised and fit
    modes: 1 on y*'s tokens. Outcome: the row's reward (1 if Y[b] = y*_b, else ``p.neg``), baseline-corrected over
    its scope, on every token. Process: token i's prefix reward (1 while Y[b, :i+1] = y*_b[:i+1]), each position
    baseline-corrected over its scope. The scope is ``p.group`` consecutive rows, or the whole batch if ≤ 1."""
    B, N = Ystar.shape
    if p.mode == STEP_SUPERVISED or p.mode == STEP_FIT:
        adv[:, :] = 1.0
        return
    process = p.mode == STEP_PRM
    C = N if process else 1
    r = np.empty((B, C))
    for b in range(B):
        for c in range(C):
            ok = prefix[b] > c if process else prefix[b] == N
            r[b, c] = 1.0 if ok else p.neg
    a = np.empty((B, C))
    baseline_advantages(r, p, a)
    for b in range(B):
        for i in range(N):
            adv[b, i] = a[b, i] if process else a[b, 0]


@njit(cache=True)
def score_and_draw(fm, w, x, j, ystar, ET, rm, fast, draw, seed, stream, state, y, lse, tok, ws):
    """One row of a separate batched step: y*'s exact log-likelihood (its tokens' log-probabilities into tok) and,
    when ``draw``, the on-policy sample y from RNG stream ``stream`` of ``seed`` (state uint64[4], seeded here;
    lse its per-token log-normalisers), as ``loglik_batch`` and ``sample_batch`` compute them (the bigram map's
    fast path when ``fast``, with its tables ET, rm). Returns (log p(y*|x), log p(y|x), the leading tokens of y
    equal to y*); 0, 0 without a draw."""
    if fast:
        ll, _ = sequence_loglik_bigram(fm, w, x, ET, rm, ystar, tok, ws)
    else:
        ll, _ = sequence_loglik(fm, w, x, j, ystar, tok, ws)
    if not draw:
        return ll, 0.0, 0
    seed_stream(seed, stream, state)
    if fast:
        lp = sample_sequence_bigram(fm, w, x, ET, rm, state, y, lse, ws)
    else:
        lp, _ = sample_sequence(fm, w, w, x, j, np.int64(POLICY), 0.0, state, y, lse, ws)
    N = ystar.shape[0]
    n = 0
    while n < N and y[n] == ystar[n]:
        n += 1
    return ll, lp, n


@njit(cache=True, parallel=True)
def separate_step(fm, w, w0, X, J, Ystar, p, seed, first_stream, it, out, g):
    """One batched step, as ``pg_step`` (same arguments and outputs; any feature map, any baseline): g += the
    policy gradient (or the supervised gradient) of the batch; row b draws from RNG stream ``first_stream + b``.
    See the module docstring."""
    B = X.shape[0]
    d = X.shape[1]
    N = Ystar.shape[1]
    k = fm.k
    D = w.shape[0]
    nb = n_blocks(B)
    fast = fm.kind == BIGRAM
    ET, rm = bigram_tables(fm, w, d, fast)
    sup = p.mode == STEP_SUPERVISED or p.mode == STEP_FIT
    draw = p.mode != STEP_FIT
    Y, llstar, logp, prefix, states = out.Y, out.llstar, out.logp, out.prefix, out.states
    lse = np.empty((B, N))
    tok = np.empty((B, N))
    scratch = block_scratch(B, 7, k)
    for blk in prange(nb):              # y*'s score and the on-policy sample, as loglik_batch and sample_batch
        ws = block_workspace(scratch, blk)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            llstar[b], logp[b], prefix[b] = score_and_draw(fm, w, X[b], J[b], Ystar[b], ET, rm, fast, draw, seed,
                                                           first_stream + b, states[b], Y[b], lse[b], tok[b], ws)
    adv = np.empty((B, N))
    step_advantages(Y, Ystar, prefix, p, adv)
    acc = np.zeros((nb, D))
    for blk in prange(nb):              # the gradient, as grad_batch
        ws = block_workspace(scratch, blk)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            seq = Ystar[b] if sup else Y[b]
            if fast:
                accumulate_grad_bigram(fm, w, X[b], seq, adv[b], ET, rm, p.scale, acc[blk], ws)
            else:
                accumulate_grad(fm, w, X[b], J[b], seq, adv[b], lse[b], not sup, p.scale, acc[blk], ws)
    for blk in range(nb):
        for t in range(D):
            g[t] += acc[blk, t]


separate_step_serial = serial_twin(separate_step)
