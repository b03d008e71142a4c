"""Batched kernels over B contexts, parallel over fixed blocks of sequences.

The batch is cut into blocks of ``BLOCK`` sequences independent of the thread count; each block owns its
scratch and (for gradients) its own accumulator, and blocks are summed in block order. Results are
therefore bit-identical for any number of threads. Per-sequence randomness comes from ``states[b]``.

Shapes: X float64[B, d] (d = 0 for cells), J int64[B], Y int64[B, N], states uint64[B, 4].

Bigram maps take the factorised fast path of ``bigram.py`` (on-policy sampling, likelihoods, gradients):
the transition exponentials are computed once per call and shared by every token of the batch.
"""
import numpy as np
from numba import njit, prange

from .bigram import accumulate_grad_bigram, bigram_tables, sample_sequence_bigram, sequence_loglik_bigram
from .features import BIGRAM
from .sequence import (POLICY, SequenceWorkspace, accumulate_grad, correct_path_gap, prefix_entropy, sample_sequence,
                       sequence_loglik)
from .serial import serial_twin

BLOCK = 32


@njit(cache=True)
def n_blocks(B):
    return (B + BLOCK - 1) // BLOCK


@njit(cache=True)
def block_scratch(B, rows, k):
    """Per-block work space float64[n_blocks, rows, k], allocated *before* the parallel loop.

    Never ``np.empty`` inside a ``prange`` body: Numba hoists such allocations out of the loop and the
    threads then share one buffer (a data race; it made gradients depend on thread timing).
    """
    return np.empty((n_blocks(B), rows, k))


@njit(cache=True)
def block_workspace(scratch, blk):
    """Block ``blk``'s ``SequenceWorkspace``: views of its rows of ``block_scratch(B, 7, k)`` (no allocation, so it
    may be taken inside a ``prange`` body)."""
    s = scratch[blk]
    return SequenceWorkspace(s[0], s[1], s[2], s[3], s[4], s[5], s[6])


@njit(cache=True, parallel=True)
def sample_batch(fm, w, w0, X, J, behaviour, eps, states, Y, lse, logp, logq):
    """Draw ``Y[b]`` from the behaviour for every context; write ``lse`` (float64[B, N]) and the sequence
    log-probabilities ``logp`` = log p_w(Y[b]|x_b), ``logq`` = log q(Y[b]|x_b) (float64[B])."""
    B = X.shape[0]
    k = fm.k
    fast = fm.kind == BIGRAM and behaviour == POLICY
    ET, rm = bigram_tables(fm, w, X.shape[1], fast)
    scratch = block_scratch(B, 7, k)
    for blk in prange(n_blocks(B)):
        ws = block_workspace(scratch, blk)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            if fast:
                lp = sample_sequence_bigram(fm, w, X[b], ET, rm, states[b], Y[b], lse[b], ws)
                lq = lp
            else:
                lp, lq = sample_sequence(fm, w, w0, X[b], J[b], behaviour, eps, states[b], Y[b], lse[b], ws)
            logp[b] = lp
            logq[b] = lq


@njit(cache=True, parallel=True)
def loglik_batch(fm, w, X, J, Y, loglik, min_token, token_logp):
    """Exact scores of given responses: ``loglik`` (float64[B]) = log p_w(Y[b]|x_b), ``min_token``
    (float64[B]) = min_i log p_w(Y[b,i]|…), ``token_logp`` (float64[B, N]) the per-token log-probs."""
    B = X.shape[0]
    k = fm.k
    fast = fm.kind == BIGRAM
    ET, rm = bigram_tables(fm, w, X.shape[1], fast)
    scratch = block_scratch(B, 7, k)
    for blk in prange(n_blocks(B)):
        ws = block_workspace(scratch, blk)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            if fast:
                ll, mn = sequence_loglik_bigram(fm, w, X[b], ET, rm, Y[b], token_logp[b], ws)
            else:
                ll, mn = sequence_loglik(fm, w, X[b], J[b], Y[b], token_logp[b], ws)
            loglik[b] = ll
            min_token[b] = mn


@njit(cache=True, parallel=True)
def entropy_batch(fm, w, X, J, Y, out):
    """out[b] = Σ_i H(p_w(·|x_b, Y[b,<i])) (nats; ``sequence.prefix_entropy``), float64[B]."""
    B = X.shape[0]
    scratch = block_scratch(B, 7, fm.k)
    for blk in prange(n_blocks(B)):
        ws = block_workspace(scratch, blk)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            out[b] = prefix_entropy(fm, w, X[b], J[b], Y[b], ws)


@njit(cache=True, parallel=True)
def grad_batch(fm, w, X, J, Y, adv, lse, have_lse, scale, g):
    """g += scale · Σ_b Σ_i adv[b, i] ∇ log p_w(Y[b,i] | x_b, Y[b,<i]).

    ``adv``, ``lse``: float64[B, N]; ``g``: float64[D]. Per-block accumulators, summed in block order.
    (The bigram fast path recomputes normalisers from shared exponentials and ignores ``lse``.)
    """
    B = X.shape[0]
    k = fm.k
    D = w.shape[0]
    nb = n_blocks(B)
    acc = np.zeros((nb, D))
    fast = fm.kind == BIGRAM
    ET, rm = bigram_tables(fm, w, X.shape[1], fast)
    scratch = block_scratch(B, 7, k)
    for blk in prange(nb):
        ws = block_workspace(scratch, blk)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            if fast:
                accumulate_grad_bigram(fm, w, X[b], Y[b], adv[b], ET, rm, scale, acc[blk], ws)
            else:
                accumulate_grad(fm, w, X[b], J[b], Y[b], adv[b], lse[b], have_lse, scale, acc[blk], ws)
    for blk in range(nb):
        for t in range(D):
            g[t] += acc[blk, t]


@njit(cache=True, parallel=True)
def margin_batch(fm, w, X, J, Ystar, gaps):
    """gaps[b] = the smallest score gap of ``w`` along the correct path ``Ystar[b]`` (float64[B])."""
    B = X.shape[0]
    k = fm.k
    scratch = block_scratch(B, 7, k)
    for blk in prange(n_blocks(B)):
        ws = block_workspace(scratch, blk)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            gaps[b] = correct_path_gap(fm, w, X[b], J[b], Ystar[b], ws)


sample_batch_serial = serial_twin(sample_batch)
loglik_batch_serial = serial_twin(loglik_batch)
entropy_batch_serial = serial_twin(entropy_batch)
grad_batch_serial = serial_twin(grad_batch)
margin_batch_serial = serial_twin(margin_batch)
