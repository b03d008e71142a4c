"""The fused batched policy-gradient step of the paper's mode (docs/theory.md §4.5), for the bigram map.

One kernel does what ``sample_batch``, ``loglik_batch`` and ``grad_batch`` did in three, and does less work per
token than any of them:

* u = xᵀW1 and Eu = exp(u − max u) once per sequence (``bigram.py``'s factorisation: a token row is
  Eu ∘ ET[prev], no per-token exponentials).
* **A row cache per sequence.** Within one sequence a token's softmax row depends only on the previous token, so
  the sequence computes each row (its k products, sum, log-normaliser and partial sums) the first time that
  previous token occurs: at most k + 1 rows, however long the response. A token then costs one uniform draw, a
  branch-free count of the partial sums at or below the target (the inverse-CDF scan's answer) — or, in a row
  whose most likely token holds half its mass or more, two comparisons with that token's interval first — and
  O(1) bookkeeping. The rows serve the draw, the sampled sequence's log-probability, the progressive-validation
  log p(y*|x) (y*'s tokens after the sample leaves it are scored in a short second loop) and the gradient.
* **The gradient by row.** Σ_i a_i (onehot(y_i) − p_i) splits into the onehot terms (O(1) a token) and
  Σ_r (Σ_{i in row r} a_i) p_r: O(k) per row used, not per token. A process reward (per prefix, baseline none)
  weights token i by its prefix's reward. An outcome reward is known only at the end of the sequence and its
  baseline only at the end of its scope (the batch, or the sequence's group), so each sequence's score goes to
  the accumulator of its reward class (correct / wrong); the advantage of a binary reward is an affine function
  of the reward within the scope, so the scope's gradient is c₁·S₁ + c₀·S₀ (``advantages.binary_advantages``).
* Supervised mode (batched SGD) takes the gradient of log p(y*|x) and samples only to count the sampled
  mistakes; fit mode (pre-training) takes the same gradient and samples nothing.

It is the ``'fused'`` kernel of the batched-step table (``steps.STEPS``); ``steps.separate_step`` takes every
other map and the per-prefix baselines.

Blocks of sequences are fixed by the batch size and group size, never by the thread count; each block owns its
accumulators and they are summed in block order, so results are bit-identical for any number of threads. Row b
draws from RNG stream ``first_stream + b`` of ``seed`` (as ``Policy.sample``), and each draw and log-probability
is computed as ``sample_batch`` computes it, so the responses and logp equal its own bit for bit. The gradient's
summation order differs from the unfused kernels' (it agrees with ``grad_batch`` to rounding).
"""
import math
from collections import namedtuple

import numpy as np
from numba import njit, prange

from ..advantages import binary_advantages
from ..bigram import TINY, prepare_exp, transition_exp
from ..codes import (ADV_ESTIMATORS, BASELINE_ALIASES, BASELINES, NO_BASELINE, SCALE_REWARDS, STEP_FIT, STEP_MODES,
                     STEP_ORM, STEP_PRM, STEP_SUPERVISED)
from ..features import BIGRAM
from ..rng import seed_stream, uniform
from ..softmax import lane_sum, row_max, shifted_exp
from ..serial import serial_twin

STEP_BLOCK = 64      # rows per block: few enough blocks that their gradient accumulators stay in cache

StepParams = namedtuple("StepParams", ["mode", "neg", "baseline", "group", "std_scale", "scale", "iterations",
                                       "estimator", "scale_rewards", "eps_low", "eps_high", "beta", "entropy_coeff",
                                       "pass_k"])
StepParams.__doc__ = """Parameters of a batched step (read by attribute inside the kernels).

mode       STEP_ORM, STEP_PRM, STEP_SUPERVISED or STEP_FIT (``codes.STEP_MODES``)
neg        the reward of a wrong response / prefix: −1.0 (±1 rewards) or 0.0 (0/1)
baseline   a ``codes.BASELINES`` code (ORM: any; PRM: any in ``separate_step``, NO_BASELINE only in ``pg_step``;
           supervised and fit: ignored)
group      the scope of the baseline: G consecutive rows per group, or the whole batch when group ≤ 1
std_scale  divide the advantages by the scope's reward std (ddof 1) + 1e-8
scale      the loss weight of every token (the paper's 1/(B·N))

The GRPO family's step (``steps.grpo``) reads the rest; the other kernels ignore them:

iterations     updates per generation batch (TRL ``num_iterations``, μ): the driver calls the step this often
estimator      a ``codes.ADV_ESTIMATORS`` code (grpo, rloo, raft, pass_k)
scale_rewards  a ``codes.SCALE_REWARDS`` code (grpo and rloo: divide by the group's / batch's reward std + 1e-4)
eps_low        the ratio's clip below 1 (TRL ``epsilon``); eps_high above it (``epsilon_high``)
beta           the k3 KL penalty's weight against the reference policy w0 (TRL ``beta``)
entropy_coeff  the entropy bonus's weight (verl ``entropy_coeff``)
pass_k         the k of the pass_k estimator (PKPO), 1 ≤ k ≤ group"""

STEP_KERNELS = ("fused", "separate", "grpo")


def step_params(mode="outcome", reward="pm1", baseline="none", group=1, std_scale=False, scale=1.0, kernel="fused",
                iterations=1, estimator="grpo", scale_rewards="group", epsilon=0.2, epsilon_high=None, beta=0.0,
                entropy_coeff=0.0, pass_k=1):
    """Validated ``StepParams`` from names: mode 'outcome', 'process', 'supervised' or 'fit'; reward 'pm1' or '01';
    baseline one of ``codes.BASELINES``; ``kernel`` the ``steps.STEPS`` kernel they are for ('fused' takes a
    process reward without baseline only; 'grpo' an outcome reward, its group ``group`` and the GRPO keys:
    ``iterations`` … ``pass_k``, see ``StepParams``; ``epsilon_high`` None means ``epsilon``). Raises ValueError
    naming the field and the accepted values."""
    if mode not in STEP_MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, STEP_MODES))}; got {mode!r}")
    if reward not in ("pm1", "01"):
        raise ValueError(f"reward must be 'pm1' or '01'; got {reward!r}")
    baseline = BASELINE_ALIASES.get(baseline, baseline)
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(map(repr, BASELINES))}; got {baseline!r}")
    if kernel not in STEP_KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(map(repr, STEP_KERNELS))}; got {kernel!r}")
    code = STEP_MODES[mode]
    if kernel == "fused" and code == STEP_PRM and baseline != "none":
        raise ValueError(f"baseline must be 'none' for the fused process-reward step; got {baseline!r} "
                         "(the per-prefix baselines run through steps.separate_step: kernel='separate')")
    if kernel == "grpo" and code != STEP_ORM:
        raise ValueError(f"mode must be 'outcome' for the GRPO-family step; got {mode!r}")
    if int(group) < 1:
        raise ValueError(f"group must be >= 1; got {group!r}")
    if estimator not in ADV_ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(map(repr, ADV_ESTIMATORS))}; got {estimator!r}")
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {', '.join(map(repr, SCALE_REWARDS))}; got {scale_rewards!r}")
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    for name, value, lo in (("iterations", iterations, 1), ("pass_k", pass_k, 1)):
        if int(value) != value or int(value) < lo:
            raise ValueError(f"{name} must be an integer >= {lo}; got {value!r}")
    for name, value in (("epsilon", epsilon), ("epsilon_high", epsilon_high), ("beta", beta),
                        ("entropy_coeff", entropy_coeff)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    if kernel == "grpo" and estimator == "pass_k" and int(pass_k) > max(1, int(group)):
        raise ValueError(f"pass_k must be an integer in [1, group = {int(group)}]; got {pass_k!r}")
    return StepParams(code, -1.0 if reward == "pm1" else 0.0, BASELINES[baseline], int(group), bool(std_scale),
                      float(scale), int(iterations), ADV_ESTIMATORS[estimator], SCALE_REWARDS[scale_rewards],
                      float(epsilon), float(epsilon_high), float(beta), float(entropy_coeff), int(pass_k))


StepOut = namedtuple("StepOut", ["Y", "llstar", "logp", "prefix", "states", "lold", "lref", "adv"])
StepOut.__doc__ = """Per-row outputs of a batched step (caller owned; ``step_out`` allocates them).

Y       int64[B, N]    the sampled responses (fit mode: not written)
llstar  float64[B]     log p_w(y*_b|x_b) before the update (progressive validation)
logp    float64[B]     log p_w(Y[b]|x_b) (fit mode: 0)
prefix  int64[B]       the number of leading tokens of Y[b] equal to y*_b (N: the response is correct; fit mode: 0)
states  uint64[B, 4]   RNG work space (seeded by the kernel)
lold    float64[B, N]  GRPO family: log p_old(Y[b]_i | x_b, Y[b]_<i) under the sampling policy (iteration 0)
lref    float64[B, N]  GRPO family: the same under the reference policy w0 (written when beta > 0)
adv     float64[B]     GRPO family: each row's advantage (written at iteration 0)"""


def step_out(B, N):
    """Freshly allocated ``StepOut`` buffers for a batch of B rows of N tokens."""
    return StepOut(np.empty((B, N), np.int64), np.empty(B), np.empty(B), np.empty(B, np.int64),
                   np.empty((B, 4), np.uint64), np.empty((B, N)), np.zeros((B, N)), np.zeros(B))


@njit(cache=True)
def _exact_row(u, w, R, r, i, tbase, ts, lg):
    """Row r of the cache from the exact logits (u, plus the transition weights after the first token) shifted by
    their own max, for the rare rows whose factorised sum underflows: fills R[r] and returns (s, z) with
    p_a = R[r, a]/s and log p_a = logit_a − z, as ``bigram.sample_sequence_bigram``'s exact path."""
    k = u.shape[0]
    for a in range(k):
        lg[a] = u[a] if i == 0 else u[a] + ts * w[tbase + r * k + a]
    m = row_max(lg)
    s = shifted_exp(lg, m, R[r])
    return s, m + math.log(s)


@njit(cache=True)
def _last_positive(R, r):
    """``softmax.inverse_cdf``'s exit when rounding leaves the target above every partial sum."""
    a = R.shape[1] - 1
    while a > 0 and R[r, a] <= 0.0:
        a -= 1
    return a


@njit(cache=True)
def pg_step_sequence(fm, w, x, ystar, ET, rm, p, state, y, stamp, R, C, SZ, mark, u, eu, cu, wt, A):
    """One row of ``pg_step``: draw y (int64[N], written) on-policy, score it and y*, add its gradient to A.

    Row cache. Within one sequence a token's row depends only on the previous token (the context part Eu is
    fixed), so rows live in R float64[k+1, k] (slot k: the first token; slot a: after token a) with their
    partial sums C (same shape) and, in SZ float64[4, k+1], their sums S = SZ[0] and log-normalisers Z = SZ[1];
    a slot is valid when mark[0, slot] == ``stamp`` (mark int64[2, k+1]; the stamp is unique per row of the
    batch). A sequence computes at most k + 1 rows, whatever N.

    Mode first. A row whose most likely token m holds at least half its mass also keeps that token's interval
    [C[m−1], C[m]) (SZ[2], SZ[3]; mark[1] = m): a target inside it is drawn as m with two comparisons, which
    is exactly the count of partial sums at or below it (the sums never decrease). Rows that are not so peaked
    get an empty interval. The branch is taken for most tokens of a trained policy, so the processor predicts
    the next row instead of waiting for the count (each token's row depends on the token before). The draws are
    the same bit for bit, and the count is still the fallback (`python -m bench.kernels` times the step).

    Pass 1 draws the tokens and scores y and y* (y*'s own rows once the sample has left it). Each token's draw,
    log-probability and normaliser equal those ``bigram.sample_sequence_bigram`` computes, bit for bit (same rows
    and sums; the count of partial sums at or below the target is where ``softmax.inverse_cdf``'s scan stops).

    Pass 2 adds the row's gradient Σ_i a_i (onehot(y_i) − p(·|x, y_<i)) to A[0] (float64[D]), or, for an ORM
    row whose response is correct, to A[1] (each reward class has its accumulator; its coefficient comes when
    the scope's baseline is known). ORM rows weight every token by ``p.scale``; PRM rows weight token i by the
    prefix reward (1 or ``p.neg``) times ``p.scale``; supervised and fit rows take y*'s tokens with weight
    ``p.scale``. Since p_i depends on i only through the previous token, Σ_i a_i p_i = Σ_r (Σ_{i in slot r} a_i)
    R[r]/S[r]: the onehot terms cost O(1) a token and the probabilities O(k) per slot used (``wt``
    float64[k+1] collects the weights and is zeroed again). The context block goes through ``cu``
    (float64[k] scratch; pass 1 uses it for the rare exact rows) and x ⊗ cu. Scratch u, eu: float64[k].
    Returns (log p(y*|x), log p(y|x), leading tokens of y equal to y*).

    The token loops are written out with no helper calls that take arrays (a row's first use calls
    ``softmax.lane_sum``, so its sum has the other kernels' bits, and the rare exact row calls out): a call, inlined
    or not, whose body branches keeps an atomic reference-count increment and
    decrement per array argument — measured ~17 ns per array per call here (35 ns for two arrays), more than a
    cached token costs; the earlier version's fill call (15 arrays) cost ~0.5 µs per row. The call of this
    function itself (once per row, ~20 arrays) is kept: writing its body into ``pg_step``'s block loop saved
    ~0.2 µs a row but made ``pg_step`` compile in 25 s instead of 17 (and its serial twin in 7 s instead of 3),
    because a separate function is compiled once for both twins; the step's time did not move measurably.
    """
    k = fm.k
    N = fm.N
    ts = fm.tscale
    tbase = x.shape[0] * k
    d = x.shape[0]
    mu = prepare_exp(fm, w, x, u, eu)   # u = xᵀW1, Eu = exp(u − max u): once per sequence, so the call's
                                        # reference counts do not matter
    sup = p.mode == STEP_SUPERVISED or p.mode == STEP_FIT
    logp = 0.0
    lls = 0.0
    on = True
    npre = N              # the first position where y left y* (N: never)
    n_draw = N
    if p.mode == STEP_FIT:     # nothing sampled: y*'s side scores every position
        npre = -1
        n_draw = 0
    prev = 0              # the sampled sequence's previous token
    for i in range(N):
        # side 0: the sampled token (drawn from the row after y's previous token; while y = y* so far, the same
        # row scores y*); side 1: y*'s token once the sample has left y* (fit mode: every position)
        for side in range(2):
            if side == 0:
                if i >= n_draw:
                    continue
                r = k if i == 0 else prev
            else:
                if i <= npre:
                    continue
                r = k if i == 0 else ystar[i - 1]
            if mark[0, r] != stamp:     # the row's first use in this sequence (written out: see the docstring)
                if i == 0:
                    for a in range(k):
                        R[r, a] = eu[a]
                else:
                    for a in range(k):
                        R[r, a] = eu[a] * ET[r, a]
                s = lane_sum(R[r])      # once per row, so its view and reference count do not matter
                if s > TINY:
                    z = mu + math.log(s) if i == 0 else mu + math.log(s) + rm[r]
                else:
                    s, z = _exact_row(u, w, R, r, i, tbase, ts, cu)
                acc = 0.0
                best = 0
                top = -1.0
                for a in range(k):      # the partial sums softmax.inverse_cdf's scan forms, in its order
                    e = R[r, a]
                    acc += e
                    C[r, a] = acc
                    gt = e > top        # the first most likely token, without branches
                    best = a if gt else best
                    top = e if gt else top
                SZ[0, r] = s
                SZ[1, r] = z
                if top >= 0.5 * s:      # peaked: its interval (see the docstring); else an empty one
                    SZ[2, r] = -1.0 if best == 0 else C[r, best - 1]
                    SZ[3, r] = C[r, best]
                else:
                    SZ[2, r] = np.inf
                    SZ[3, r] = -np.inf
                mark[0, r] = stamp
                mark[1, r] = best
            z = SZ[1, r]
            if side == 1:
                b = ystar[i]
                if i == 0:
                    lls += u[b] - z
                else:
                    lls += (u[b] + ts * w[tbase + r * k + b]) - z
                continue
            # softmax.inverse_cdf on the cached row: its scan stops at the first partial sum above the target (whose
            # weight is then > 0), i.e. at the number of partial sums at or below it: the mode's interval first,
            # else counted without branches
            target = uniform(state) * SZ[0, r]
            if SZ[2, r] <= target and target < SZ[3, r]:
                a = mark[1, r]
            else:
                a = 0
                for t in range(k):
                    a += C[r, t] <= target
                if a == k:
                    a = _last_positive(R, r)
            y[i] = a
            if i == 0:
                logp += u[a] - z
            else:
                logp += (u[a] + ts * w[tbase + prev * k + a]) - z
            if on:
                b = ystar[i]
                if i == 0:
                    lls += u[b] - z
                else:
                    lls += (u[b] + ts * w[tbase + prev * k + b]) - z
                if a != b:
                    on = False
                    npre = i
            prev = a
    # pass 2: the gradient
    seq = ystar if sup else y
    G = A[1] if (p.mode == STEP_ORM and npre == N) else A[0]
    for a in range(k):
        cu[a] = 0.0
    for i in range(N):
        ai = p.scale if (sup or p.mode == STEP_ORM or i < npre) else p.neg * p.scale
        if ai != 0.0:
            a = seq[i]
            cu[a] += ai
            if i == 0:
                wt[k] += ai
            else:
                prev = seq[i - 1]
                wt[prev] += ai
                G[tbase + prev * k + a] += ts * ai
    for r in range(k + 1):
        if wt[r] != 0.0:
            c = -wt[r] / SZ[0, r]
            wt[r] = 0.0
            for t in range(k):
                cu[t] += c * R[r, t]
            if r < k:
                off = tbase + r * k
                tc = ts * c
                for t in range(k):
                    G[off + t] += tc * R[r, t]
    for c in range(d):                  # the context block: G[c·k + a] += x_c · cu_a
        xc = x[c]
        for a in range(k):
            G[c * k + a] += xc * cu[a]
    return lls, logp, max(npre, 0)


@njit(cache=True, inline="always")
def _combine(c1, c0, s1, s0, out):
    """out += c1·s1 + c0·s0 (float64[D] each)."""
    for t in range(out.shape[0]):
        out[t] += c1 * s1[t] + c0 * s0[t]


@njit(cache=True, parallel=True)
def pg_step(fm, w, w0, X, J, Ystar, p, seed, first_stream, it, out, g):
    """One batched on-policy step: g += the policy gradient (or the supervised gradient) of the batch.

    fm a BIGRAM feature map; w float64[D]; w0 the reference weights, J int64[B] the context ids and ``it`` the
    iteration (all three unused here: the step signature every ``steps.STEPS`` kernel shares); X float64[B, d]
    contexts; Ystar int64[B, N] their correct responses;
    p ``StepParams``; row b draws from RNG stream ``first_stream + b`` of ``seed``; out ``StepOut`` (written);
    g float64[D] (accumulated into, like ``grad_batch``). The reward of a row is 1 if Y[b] = y*_b (ORM) or per
    prefix (PRM), else ``p.neg``; see the module docstring for the baselines.
    """
    B = X.shape[0]
    d = X.shape[1]
    k = fm.k
    D = w.shape[0]
    ET = np.empty((k, k))
    rm = np.empty(k)
    transition_exp(fm, w, d, ET, rm)
    orm = p.mode == STEP_ORM
    by_group = orm and p.baseline != NO_BASELINE and 1 < p.group < B     # the outcome baseline is per group
    rows_per = max(1, STEP_BLOCK // p.group) * p.group if by_group else STEP_BLOCK   # blocks of whole groups
    nb = (B + rows_per - 1) // rows_per
    # per block: [0] wrong-class or the only accumulator, [1] correct class, [2] the block's combined groups;
    # only the slots the mode uses (every slot is D doubles per block, zeroed and summed once per call)
    acc = np.zeros((nb, 3 if by_group else (2 if orm else 1), D))
    scratch = np.empty((nb, 3, k))
    R = np.empty((nb, 2, k + 1, k))
    SZ = np.empty((nb, 4, k + 1))
    mark = np.full((nb, 2, k + 1), -1, np.int64)
    wt = np.zeros((nb, k + 1))
    n_ok = np.zeros(nb, np.int64)
    Y, llstar, logp, prefix, states = out.Y, out.llstar, out.logp, out.prefix, out.states   # plain arrays in prange
    N = Ystar.shape[1]
    for blk in prange(nb):
        u = scratch[blk, 0]
        eu = scratch[blk, 1]
        cu = scratch[blk, 2]
        Rb = R[blk, 0]          # the block's views, taken once: each view a call receives costs reference counts
        Cb = R[blk, 1]
        SZb = SZ[blk]
        mb = mark[blk]
        wb = wt[blk]
        ab = acc[blk]
        lo = blk * rows_per
        hi = min(B, lo + rows_per)
        for b in range(lo, hi):
            state = states[b]
            seed_stream(seed, first_stream + b, state)
            ll, lp, npre = pg_step_sequence(fm, w, X[b], Ystar[b], ET, rm, p, state, Y[b], b, Rb, Cb, SZb, mb,
                                            u, eu, cu, wb, ab)
            llstar[b] = ll
            logp[b] = lp
            prefix[b] = npre
            if npre == N:
                n_ok[blk] += 1
            if by_group and (b + 1 - lo) % p.group == 0:      # a group is complete: apply its baseline
                ok = 0
                for r in range(b + 1 - p.group, b + 1):
                    if prefix[r] == N:
                        ok += 1
                c1, c0 = binary_advantages(ok, p.group - ok, p.neg, p.baseline, p.std_scale)
                _combine(c1, c0, acc[blk, 1], acc[blk, 0], acc[blk, 2])
                acc[blk, 0, :] = 0.0
                acc[blk, 1, :] = 0.0
    if by_group:
        for blk in range(nb):
            for t in range(D):
                g[t] += acc[blk, 2, t]
    elif orm:
        ok = 0
        for blk in range(nb):
            ok += n_ok[blk]
        c1, c0 = binary_advantages(ok, B - ok, p.neg, p.baseline, p.std_scale)
        for blk in range(nb):
            _combine(c1, c0, acc[blk, 1], acc[blk, 0], g)
    else:
        for blk in range(nb):
            for t in range(D):
                g[t] += acc[blk, 0, t]


def fused_supported(fm, mode, baseline):
    """True if ``pg_step`` covers this step: the bigram map, and an outcome reward (any baseline), a process
    reward without baseline, or the supervised and fit modes (``steps.step_kind`` picks ``separate_step``
    otherwise)."""
    return fm.kind == BIGRAM and (mode != "process" or baseline == "none")


pg_step_serial = serial_twin(pg_step)
