"""The GRPO family's batched step (docs/theory.md §4.9): GRPO, RLOO, RAFT and PKPO's pass@k objective, with the
clipped importance ratio, the k3 KL penalty to a reference policy and an entropy bonus, under TRL's and verl's
option names (docs/config.md).

A step takes B = (B/G contexts) × G samples each (``p.group`` consecutive rows per context). Iteration 0 draws
the responses on-policy (row b from RNG stream ``first_stream + b``, the draws of ``sample_batch``), scores y*
(progressive validation), keeps every sampled token's log-probability under the sampling policy (``out.lold``)
and, when ``p.beta`` > 0, under the reference w0 (``out.lref``), and turns the binary outcome rewards into one
advantage per row (``policy_advantages``). Every iteration it = 0 … μ−1 (``p.iterations``; the step driver
applies an update after each) then adds to g the gradient of the surrogate

    J(w) = scale · Σ_b Σ_i [ min(ρ_bi A_b, clip(ρ_bi, 1 − ε_low, 1 + ε_high) A_b) − β k3_bi + c_H H_bi ]

at the current w, with ρ_bi = p_w(y_bi | x_b, y_b<i) / p_old(y_bi | …), the k3 estimator
k3 = exp(l_ref − l) − (l_ref − l) − 1 of KL(p_w ‖ p_ref) (l = log p_w(y_bi|…), l_ref its reference log-probability)
and H_bi the policy's exact entropy at the sampled prefix. Per token the gradient is a coefficient on the score
∇ log p_w(y_bi|…): ρA where the min takes the unclipped term (the clipped term is constant: 0 where it binds, that
is A > 0 and ρ > 1 + ε_high, or A < 0 and ρ < 1 − ε_low), minus β(1 − exp(l_ref − l)); plus the entropy's
gradient c_H Σ_a −p_a (log p_a + H) φ(x, y_<i, a). At iteration 0 the ratio is exactly 1 (the same
log-probabilities, computed by the same code), so a one-iteration step is the plain policy gradient of its
advantages. ``scale`` is the loss type's per-token weight (grpo, bnpo and dapo: 1/(B·N) since every response has
N tokens; dr_grpo: 1/(B·max_completion_length)).

Any feature map: the generic per-sequence kernels (``grpo_sequence_grad``), and for the bigram map its fast path
(sampling and y*'s score as ``separate_step``; the old and reference log-probabilities by
``sequence_loglik_bigram``, the gradient by ``grpo_bigram_grad``: a token's softmax row depends on the previous
token only, so each row is formed once per sequence and per policy, with no per-token exponentials but the
ratio's and the KL's). Blocks of rows are fixed by the batch size (``batch.BLOCK``) and summed in block order, so the
step is bit-identical for any number of threads.
"""
import math

import numpy as np
from numba import njit, prange

from ..batch import BLOCK, block_scratch, block_workspace, n_blocks
from ..bigram import TINY, bigram_tables, prepare_exp, sequence_loglik_bigram
from ..codes import ADV_PASS_K, ADV_RAFT, ADV_RLOO, SCALE_BATCH, SCALE_GROUP
from ..features import BIGRAM, finish_grad, prepare, token_grad, token_logits
from ..sequence import sequence_loglik
from ..serial import serial_twin
from ..softmax import lane_sum, logsumexp
from .separate import score_and_draw

GRPO_STD_EPS = 1e-4     # TRL's: advantages / (std + 1e-4)


@njit(cache=True)
def pass_k_weight(n, c, k):
    """The advantage PKPO's s^(loo−1) estimator gives a correct sample of a group of n with c correct, times n:
    n · C(n−c, k−1) / C(n, k) (a wrong sample's is 0 for binary rewards). With it, Σ_b A_b ∇log p(y_b) / n is an
    unbiased estimate of ∇ pass@k; k = 1 gives the raw 0/1 reward. Computed as a product (no binomials)."""
    if c < 1 or n - c < k - 1:
        return 0.0
    r = k / (n - k + 1.0)
    for j in range(k - 1):
        r *= (n - c - j) / (n - j)
    return n * r


@njit(cache=True)
def _std(r, lo, hi, mean):
    """The sample std (ddof 1) of r[lo:hi] about ``mean`` (0 for fewer than two)."""
    if hi - lo < 2:
        return 0.0
    s = 0.0
    for b in range(lo, hi):
        s += (r[b] - mean) ** 2
    return math.sqrt(s / (hi - lo - 1))


@njit(cache=True)
def policy_advantages(prefix, N, p, adv):
    """adv float64[B] (written): each row's advantage from its binary outcome reward r_b (1 if prefix[b] = N, the
    response is y*, else ``p.neg``), over groups of ``p.group`` consecutive rows:

    * grpo: r − the group's mean; rloo: r − the mean of the group's other members; both divided by the group's
      (scale_rewards 'group') or the batch's ('batch') reward std, ddof 1, + 1e-4, or not at all ('none');
    * raft: B / (correct rows of the batch) for a correct row, 0 else (SFT on the correct samples, their mean
      loss; no update when none is correct);
    * pass_k: ``pass_k_weight(G, c, p.pass_k)`` for a correct row of a group with c correct, 0 else."""
    B = adv.shape[0]
    G = p.group
    r = np.empty(B)
    n_ok = 0
    for b in range(B):
        if prefix[b] == N:
            r[b] = 1.0
            n_ok += 1
        else:
            r[b] = p.neg
    if p.estimator == ADV_RAFT:
        for b in range(B):
            adv[b] = B / n_ok if prefix[b] == N else 0.0
        return
    sd_batch = 0.0
    if p.estimator != ADV_PASS_K and p.scale_rewards == SCALE_BATCH:
        mean = 0.0
        for b in range(B):
            mean += r[b]
        sd_batch = _std(r, 0, B, mean / B)
    for lo in range(0, B, G):
        hi = min(B, lo + G)
        n = hi - lo
        if p.estimator == ADV_PASS_K:
            c = 0
            for b in range(lo, hi):
                if prefix[b] == N:
                    c += 1
            a1 = pass_k_weight(n, c, p.pass_k)
            for b in range(lo, hi):
                adv[b] = a1 if prefix[b] == N else 0.0
            continue
        total = 0.0
        for b in range(lo, hi):
            total += r[b]
        mean = total / n
        sd = sd_batch
        if p.scale_rewards == SCALE_GROUP:
            sd = _std(r, lo, hi, mean)
        for b in range(lo, hi):
            if p.estimator == ADV_RLOO:
                a = r[b] - (total - r[b]) / (n - 1) if n > 1 else 0.0
            else:
                a = r[b] - mean
            if p.scale_rewards == SCALE_GROUP or p.scale_rewards == SCALE_BATCH:
                a /= sd + GRPO_STD_EPS
            adv[b] = a


@njit(cache=True, inline="always")
def token_coefficient(lt, lold, lref, A, beta, lo, hi):
    """A token's coefficient on its score ∇ log p_w(y_i|…) in the surrogate's gradient: ρA unless the clip binds
    (A > 0 and ρ > hi, or A < 0 and ρ < lo: then the min takes the constant clipped term), minus β(1 − e^{l_ref −
    l}) from the k3 KL; lt, lold, lref the token's log-probability now, under the sampling and the reference
    policy."""
    c = 0.0
    if A != 0.0:
        rho = math.exp(lt - lold)
        if not ((A > 0.0 and rho > hi) or (A < 0.0 and rho < lo)):
            c = rho * A
    if beta != 0.0:
        c -= beta * (1.0 - math.exp(lref - lt))
    return c


@njit(cache=True)
def grpo_sequence_grad(fm, w, x, j, y, lold, lref, A, p, g, ws):
    """g += the gradient at w of one sampled response's terms of the surrogate (module docstring): y int64[N] the
    response, lold / lref float64[N] its tokens' log-probabilities under the sampling and the reference policy,
    A its advantage, p ``StepParams`` (scale, eps_low, eps_high, beta, entropy_coeff), ws a SequenceWorkspace."""
    if A == 0.0 and p.beta == 0.0 and p.entropy_coeff == 0.0:
        return
    u, lg, coef, cu = ws.u, ws.lg, ws.coef, ws.cu
    k = fm.k
    hi = 1.0 + p.eps_high
    lo = 1.0 - p.eps_low
    sc = p.scale
    ec = p.entropy_coeff * sc
    prepare(fm, w, x, j, u)
    for a in range(k):
        cu[a] = 0.0
    for i in range(fm.N):
        token_logits(fm, w, x, j, u, y, i, lg)
        z = logsumexp(lg)
        lt = lg[y[i]] - z                   # as sequence_loglik computes it: the ratio is 1 at iteration 0
        c = token_coefficient(lt, lold[i], lref[i], A, p.beta, lo, hi)
        if c == 0.0 and ec == 0.0:
            continue
        h = 0.0
        if ec != 0.0:
            for a in range(k):
                la = lg[a] - z
                h -= math.exp(la) * la
        cs = c * sc
        for a in range(k):
            la = lg[a] - z
            pa = math.exp(la)
            coef[a] = -cs * pa - ec * pa * (la + h)
        coef[y[i]] += cs
        token_grad(fm, x, j, y, i, coef, cu, g)
    finish_grad(fm, x, j, cu, g)


@njit(cache=True)
def grpo_bigram_grad(fm, w, x, y, lold, lref, A, p, g, ET, rm, ws, R, mark, S):
    """``grpo_sequence_grad`` for the bigram map, by row and without per-token exponentials (``bigram.py``'s
    factorisation, ET and rm from ``transition_exp`` of w). A token's row depends on the previous token only, so
    each of the at most k + 1 rows is formed once per sequence (R float64[k+1, k]: its numerators Eu ∘ ET[r],
    or its exact probabilities when the factorised sum underflows; S float64[4, k+1]: the rows' summed score
    coefficients, token counts, entropies and log-sums; mark int64[k+1]: 0 not formed, 1 factorised, 2 exact).
    A token's log-probability is the expression ``sequence_loglik_bigram`` evaluates (so the ratio to
    ``lold`` from that kernel is exactly 1 at iteration 0); Σ_i c_i (φ(y_i) − Σ_a p_a φ_a) then costs O(1) a
    token for the indicator terms and O(k) a row for the expectations, and the entropy bonus its per-row term
    times the row's token count."""
    if A == 0.0 and p.beta == 0.0 and p.entropy_coeff == 0.0:
        return
    u, eu, lg, cu = ws.u, ws.u0, ws.lg, ws.cu
    k = fm.k
    ts = fm.tscale
    tbase = x.shape[0] * k
    hi = 1.0 + p.eps_high
    lo = 1.0 - p.eps_low
    sc = p.scale
    ec = p.entropy_coeff * sc
    mu = prepare_exp(fm, w, x, u, eu)
    for r in range(k + 1):
        mark[r] = 0
        S[0, r] = 0.0
        S[1, r] = 0.0
        S[2, r] = 0.0
    for a in range(k):
        cu[a] = 0.0
    prev = 0
    for i in range(fm.N):
        r = k if i == 0 else prev
        if mark[r] == 0:
            for a in range(k):
                R[r, a] = eu[a] if i == 0 else eu[a] * ET[r, a]
            sr = lane_sum(R[r])
            if sr > TINY:
                S[3, r] = math.log(sr)
                mark[r] = 1
                for a in range(k):
                    R[r, a] /= sr
            else:                                   # the exact row (as sequence_loglik_bigram's fallback)
                token_logits(fm, w, x, 0, u, y, i, lg)
                z = logsumexp(lg)
                S[3, r] = z
                mark[r] = 2
                for a in range(k):
                    R[r, a] = math.exp(lg[a] - z)
            if ec != 0.0:                           # the row's entropy, from its log-probabilities
                h = 0.0
                for a in range(k):
                    if mark[r] == 1:
                        la = u[a] - mu - S[3, r]
                        if i > 0:
                            la += ts * w[tbase + r * k + a] - rm[r]
                    else:
                        la = (u[a] if i == 0 else u[a] + ts * w[tbase + r * k + a]) - S[3, r]
                    h -= R[r, a] * la
                S[2, r] = h
        b = y[i]
        if mark[r] == 1:                            # sequence_loglik_bigram's expression, term for term
            lt = u[b] - mu - S[3, r]
            if i > 0:
                lt += ts * w[tbase + prev * k + b] - rm[prev]
        elif i == 0:
            lt = u[b] - S[3, r]
        else:
            lt = (u[b] + ts * w[tbase + prev * k + b]) - S[3, r]
        c = token_coefficient(lt, lold[i], lref[i], A, p.beta, lo, hi)
        S[1, r] += 1.0
        if c != 0.0:
            cs = c * sc
            S[0, r] += cs
            cu[b] += cs
            if i > 0:
                g[tbase + r * k + b] += ts * cs
        prev = b
    for r in range(k + 1):
        if mark[r] == 0 or (S[0, r] == 0.0 and ec == 0.0):
            continue
        cs = S[0, r]
        ne = ec * S[1, r]
        h = S[2, r]
        for a in range(k):
            pa = R[r, a]
            if ne != 0.0:
                if mark[r] == 1:
                    la = u[a] - mu - S[3, r]
                    if r < k:
                        la += ts * w[tbase + r * k + a] - rm[r]
                else:
                    la = (u[a] if r == k else u[a] + ts * w[tbase + r * k + a]) - S[3, r]
                v = -cs * pa - ne * pa * (la + h)
            else:
                v = -cs * pa
            cu[a] += v
            if r < k:
                g[tbase + r * k + a] += ts * v
    finish_grad(fm, x, 0, cu, g)


@njit(cache=True, parallel=True)
def grpo_step(fm, w, w0, X, J, Ystar, p, seed, first_stream, it, out, g):
    """One iteration ``it`` of a GRPO-family step (module docstring): the signature of every ``steps.STEPS``
    kernel. Iteration 0 writes out.Y, llstar, logp, prefix, lold, lref (when beta > 0) and adv; every iteration
    adds its gradient at w to g."""
    B = X.shape[0]
    N = Ystar.shape[1]
    k = fm.k
    D = w.shape[0]
    nb = n_blocks(B)
    scratch = block_scratch(B, 7, k)
    fast = fm.kind == BIGRAM
    R = np.empty((nb, k + 1, k))            # the bigram path's per-block rows (block_scratch's rule: before prange)
    mark = np.empty((nb, k + 1), np.int64)
    S = np.empty((nb, 4, k + 1))
    Y, lold, lref, adv = out.Y, out.lold, out.lref, out.adv
    ET, rm = bigram_tables(fm, w, X.shape[1], fast)
    if it == 0:
        llstar, logp, prefix, states = out.llstar, out.logp, out.prefix, out.states
        ET0, rm0 = bigram_tables(fm, w0, X.shape[1], fast and p.beta != 0.0)
        lse = np.empty((B, N))
        tok = np.empty((B, N))
        for blk in prange(nb):          # y*'s score and the on-policy sample, as separate_step
            ws = block_workspace(scratch, blk)
            for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
                llstar[b], logp[b], prefix[b] = score_and_draw(fm, w, X[b], J[b], Ystar[b], ET, rm, fast,
                                                               np.bool_(True), seed, first_stream + b, states[b],
                                                               Y[b], lse[b], tok[b], ws)
                if fast:
                    sequence_loglik_bigram(fm, w, X[b], ET, rm, Y[b], lold[b], ws)
                    if p.beta != 0.0:
                        sequence_loglik_bigram(fm, w0, X[b], ET0, rm0, Y[b], lref[b], ws)
                else:
                    sequence_loglik(fm, w, X[b], J[b], Y[b], lold[b], ws)
                    if p.beta != 0.0:
                        sequence_loglik(fm, w0, X[b], J[b], Y[b], lref[b], ws)
        policy_advantages(prefix, N, p, adv)
    acc = np.zeros((nb, D))
    for blk in prange(nb):              # the surrogate's gradient at the current w
        ws = block_workspace(scratch, blk)
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            if fast:
                grpo_bigram_grad(fm, w, X[b], Y[b], lold[b], lref[b], adv[b], p, acc[blk], ET, rm, ws, R[blk],
                                 mark[blk], S[blk])
            else:
                grpo_sequence_grad(fm, w, X[b], J[b], Y[b], lold[b], lref[b], adv[b], p, acc[blk], ws)
    for blk in range(nb):
        for t in range(D):
            g[t] += acc[blk, t]


grpo_step_serial = serial_twin(grpo_step)
