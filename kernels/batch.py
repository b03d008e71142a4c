"""Batched kernels over B contexts, parallel over fixed blocks of sequences.

The batch is cut into blocks of ``BLOCK`` sequences independent of the thread count; each block owns its
scratch and (for gradients) its own accumulator, and blocks are summed in block order. Results are
therefore bit-identical for any number of threads. Per-sequence randomness comes from ``states[b]``.

Shapes: X float64[B, d] (d = 0 for cells), J int64[B], Y int64[B, N], states uint64[B, 4].
"""
import numpy as np
from numba import njit, prange

from .sequence import accumulate_grad, correct_path_gap, sample_sequence, sequence_loglik
from .twin import serial_twin

BLOCK = 32


@njit(cache=True)
def n_blocks(B):
    return (B + BLOCK - 1) // BLOCK


@njit(cache=True, parallel=True)
def sample_batch(fm, w, w0, X, J, behaviour, eps, states, Y, lse, logp, logq):
    """Draw ``Y[b]`` from the behaviour for every context; write ``lse`` (float64[B, N]) and the sequence
    log-probabilities ``logp`` = log p_w(Y[b]|x_b), ``logq`` = log q(Y[b]|x_b) (float64[B])."""
    B = X.shape[0]
    k = fm[1]
    for blk in prange(n_blocks(B)):
        u = np.empty(k)
        u0 = np.empty(k)
        lg = np.empty(k)
        lg0 = np.empty(k)
        e = np.empty(k)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            lp, lq = sample_sequence(fm, w, w0, X[b], J[b], behaviour, eps, states[b], Y[b], lse[b],
                                     u, u0, lg, lg0, e)
            logp[b] = lp
            logq[b] = lq


@njit(cache=True, parallel=True)
def loglik_batch(fm, w, X, J, Y, loglik, min_token, token_logp):
    """Exact scores of given responses: ``loglik`` (float64[B]) = log p_w(Y[b]|x_b), ``min_token``
    (float64[B]) = min_i log p_w(Y[b,i]|…), ``token_logp`` (float64[B, N]) the per-token log-probs."""
    B = X.shape[0]
    k = fm[1]
    for blk in prange(n_blocks(B)):
        u = np.empty(k)
        lg = np.empty(k)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            ll, mn = sequence_loglik(fm, w, X[b], J[b], Y[b], token_logp[b], u, lg)
            loglik[b] = ll
            min_token[b] = mn


@njit(cache=True, parallel=True)
def grad_batch(fm, w, X, J, Y, adv, lse, have_lse, scale, g):
    """g += scale · Σ_b Σ_i adv[b, i] ∇ log p_w(Y[b,i] | x_b, Y[b,<i]).

    ``adv``, ``lse``: float64[B, N]; ``g``: float64[D]. Per-block accumulators, summed in block order.
    """
    B = X.shape[0]
    k = fm[1]
    D = w.shape[0]
    nb = n_blocks(B)
    acc = np.zeros((nb, D))
    for blk in prange(nb):
        u = np.empty(k)
        lg = np.empty(k)
        coef = np.empty(k)
        cu = np.empty(k)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            accumulate_grad(fm, w, X[b], J[b], Y[b], adv[b], lse[b], have_lse, scale, acc[blk],
                            u, lg, coef, cu)
    for blk in range(nb):
        for t in range(D):
            g[t] += acc[blk, t]


@njit(cache=True, parallel=True)
def margin_batch(fm, w, X, J, Ystar, gaps):
    """gaps[b] = the smallest score gap of ``w`` along the correct path ``Ystar[b]`` (float64[B])."""
    B = X.shape[0]
    k = fm[1]
    for blk in prange(n_blocks(B)):
        u = np.empty(k)
        lg = np.empty(k)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            gaps[b] = correct_path_gap(fm, w, X[b], J[b], Ystar[b], u, lg)


sample_batch_serial = serial_twin(sample_batch)
loglik_batch_serial = serial_twin(loglik_batch)
grad_batch_serial = serial_twin(grad_batch)
margin_batch_serial = serial_twin(margin_batch)
