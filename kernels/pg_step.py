"""The fused batched policy-gradient step of the paper's mode (docs/theory.md §4.5), for the bigram map.

One pass over each sequence does what ``sample_batch``, ``loglik_batch`` and ``grad_batch`` did in three:

* u = xᵀW1 and Eu = exp(u − max u) once per sequence (``bigram.py``'s factorisation: a token row is
  Eu ∘ ET[prev], no per-token exponentials);
* each token's row serves the draw, the sampled sequence's log-probability, the gradient coefficients and — while
  the sampled prefix equals y*'s (the two rows are then the same row) — the progressive-validation log p(y*|x);
  once the sample leaves y*, y*'s remaining tokens are scored in a short second loop;
* the gradient is accumulated as the tokens are drawn. A process reward (per-prefix, baseline none) is known as
  each token is drawn. An outcome reward is known only at the end of the sequence and its baseline only at the end
  of its scope (the batch, or the sequence's group), so each sequence's score Σ_i ∇ log p(y_i|…) goes to the
  accumulator of its reward class (correct / wrong); the advantage of a binary reward is an affine function of
  the reward within the scope, so the scope's gradient is c₁·S₁ + c₀·S₀ (``advantages.binary_advantages``).
* supervised mode (batched SGD) takes the gradient of log p(y*|x) in the same passes and samples only to count
  the sampled mistakes; fit mode (pre-training) takes the same gradient and samples nothing.

Blocks of sequences are fixed by the batch size and group size, never by the thread count; each block owns its
accumulators and they are summed in block order, so results are bit-identical for any number of threads. Row b
draws from RNG stream ``first_stream + b`` of ``seed`` (as ``Policy.sample``), so the sampled responses equal
those of ``sample_batch`` bit for bit. Only the summation order of the gradient differs from the unfused kernels.
"""
import math
from collections import namedtuple

import numpy as np
from numba import njit, prange

from .advantages import binary_advantages
from .batch import BLOCK
from .bigram import TINY, _prepare_exp, bigram_row, transition_exp
from .codes import BASELINES, NO_BASELINE, STEP_FIT, STEP_MODES, STEP_ORM, STEP_PRM, STEP_SUPERVISED
from .features import BIGRAM, token_logits
from .rng import seed_stream, uniform
from .softmax import inverse_cdf, row_max, shifted_exp
from .twin import serial_twin

StepParams = namedtuple("StepParams", ["mode", "neg", "baseline", "group", "std_scale", "scale"])
StepParams.__doc__ = """Parameters of ``pg_step`` (read by attribute inside the kernel).

mode       STEP_ORM, STEP_PRM, STEP_SUPERVISED or STEP_FIT (``codes.STEP_MODES``)
neg        the reward of a wrong response / prefix: −1.0 (±1 rewards) or 0.0 (0/1)
baseline   a ``codes.BASELINES`` code (ORM: any; PRM: NO_BASELINE only; supervised: ignored)
group      the scope of the baseline: G consecutive rows per group, or the whole batch when group ≤ 1
std_scale  divide the advantages by the scope's reward std (ddof 1) + 1e-8
scale      the loss weight of every token (the paper's 1/(B·N))"""

StepOut = namedtuple("StepOut", ["Y", "llstar", "logp", "prefix", "states"])
StepOut.__doc__ = """Per-row outputs of ``pg_step`` (caller owned; ``step_out`` allocates them).

Y       int64[B, N]    the sampled responses (fit mode: not written)
llstar  float64[B]     log p_w(y*_b|x_b) before the update (progressive validation)
logp    float64[B]     log p_w(Y[b]|x_b) (fit mode: 0)
prefix  int64[B]       the number of leading tokens of Y[b] equal to y*_b (N: the response is correct; fit mode: 0)
states  uint64[B, 4]   RNG work space (seeded by the kernel)"""


def step_params(mode="outcome", reward="pm1", baseline="none", group=1, std_scale=False, scale=1.0):
    """Validated ``StepParams`` from names: mode 'outcome', 'process', 'supervised' or 'fit'; reward 'pm1' or '01';
    baseline one of ``codes.BASELINES``. Raises ValueError naming the field and the accepted values."""
    if mode not in STEP_MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, STEP_MODES))}; got {mode!r}")
    if reward not in ("pm1", "01"):
        raise ValueError(f"reward must be 'pm1' or '01'; got {reward!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(map(repr, BASELINES))}; got {baseline!r}")
    code = STEP_MODES[mode]
    if code == STEP_PRM and baseline != "none":
        raise ValueError(f"baseline must be 'none' for the fused process-reward step; got {baseline!r} "
                         "(the per-prefix baselines run through grad_batch)")
    if int(group) < 1:
        raise ValueError(f"group must be >= 1; got {group!r}")
    return StepParams(code, -1.0 if reward == "pm1" else 0.0, BASELINES[baseline], int(group), bool(std_scale),
                      float(scale))


def step_out(B, N):
    """Freshly allocated ``StepOut`` buffers for a batch of B rows of N tokens."""
    return StepOut(np.empty((B, N), np.int64), np.empty(B), np.empty(B), np.empty(B, np.int64),
                   np.empty((B, 4), np.uint64))


@njit(cache=True)
def _row_exact(fm, w, x, u, seq, i, e, lg):
    """A token row from the exact logits (shifted by their own max), for the rare rows whose factorised sum
    underflows: fills e (p_a = e[a]/s) and returns (s, z) with log p_a = logit_a − z."""
    token_logits(fm, w, x, 0, u, seq, i, lg)
    m = row_max(lg)
    s = shifted_exp(lg, m, e)
    return s, m + math.log(s)


@njit(cache=True, inline="always")
def _logit(w, u, tbase, ts, prev, i, a):
    if i == 0:
        return u[a]
    return u[a] + ts * w[tbase + prev * u.shape[0] + a]


@njit(cache=True, inline="always")
def _score(e, s, a, ai, ts, prev, i, coef, cu, tr):
    """cu += ai·(onehot(a) − e/s) and, after the first token, tr[prev·k:] += ts·ai·(onehot(a) − e/s). Three
    plain loops through ``coef`` (float64[k] scratch): measured faster than one fused loop."""
    k = e.shape[0]
    c = -ai / s
    for t in range(k):
        coef[t] = c * e[t]
    coef[a] += ai
    for t in range(k):
        cu[t] += coef[t]
    if i > 0:
        off = prev * k
        for t in range(k):
            tr[off + t] += ts * coef[t]


@njit(cache=True)
def pg_step_sequence(fm, w, x, ystar, ET, rm, p, state, y, u, eu, e, lg, cu, tr):
    """One row of ``pg_step``: draw y (int64[N], written) on-policy, score it and y*, accumulate the gradient.

    The context block of the gradient goes to ``cu`` (float64[k], zeroed here; the caller adds x ⊗ cu), the
    transition block to ``tr`` (float64[k·k], indexed prev·k + a; accumulated into). ORM rows accumulate their
    score with weight ``p.scale`` (the class coefficient comes later); PRM rows weight token i by the prefix
    reward (1 or ``p.neg``) times ``p.scale``; supervised rows take y*'s tokens with weight ``p.scale``.
    Scratch u, eu, e, lg: float64[k]. Returns (log p(y*|x), log p(y|x), leading tokens of y equal to y*).

    The token loop is written out as ``bigram.sample_sequence_bigram``'s (same draws, bit for bit): helper calls
    that return the row's sum and normaliser measured ~20% slower here.
    """
    k = fm[1]
    N = fm[2]
    ts = fm[3]
    tbase = x.shape[0] * k
    mu = _prepare_exp(fm, w, x, u, eu)
    for a in range(k):
        cu[a] = 0.0
    sup = p.mode == STEP_SUPERVISED or p.mode == STEP_FIT
    logp = 0.0
    lls = 0.0
    on = True
    npre = N              # the first position where y left y* (N: never)
    n_draw = N
    if p.mode == STEP_FIT:     # nothing sampled: y*'s loop below scores every position
        npre = -1
        n_draw = 0
    prev = 0
    for i in range(n_draw):
        s = bigram_row(eu, ET, prev, i, e)
        if s > TINY:
            a = inverse_cdf(e, uniform(state) * s)
            z = mu + math.log(s) if i == 0 else mu + math.log(s) + rm[prev]
        else:
            s, z = _row_exact(fm, w, x, u, y, i, e, lg)
            a = inverse_cdf(e, uniform(state) * s)
        y[i] = a
        logp += _logit(w, u, tbase, ts, prev, i, a) - z
        if on:
            b = ystar[i]
            lls += _logit(w, u, tbase, ts, prev, i, b) - z
            if sup:
                _score(e, s, b, p.scale, ts, prev, i, lg, cu, tr)
            if a != b:
                on = False
                npre = i
        if not sup:
            ai = p.scale if (on or p.mode == STEP_ORM) else p.neg * p.scale
            if ai != 0.0:
                _score(e, s, a, ai, ts, prev, i, lg, cu, tr)
        prev = a
    for i in range(npre + 1, N):          # y*'s tokens after the sample left it
        prev = ystar[i - 1] if i > 0 else 0
        s = bigram_row(eu, ET, prev, i, e)
        if s > TINY:
            z = mu + math.log(s) if i == 0 else mu + math.log(s) + rm[prev]
        else:
            s, z = _row_exact(fm, w, x, u, ystar, i, e, lg)
        b = ystar[i]
        lls += _logit(w, u, tbase, ts, prev, i, b) - z
        if sup:
            _score(e, s, b, p.scale, ts, prev, i, lg, cu, tr)
    return lls, logp, max(npre, 0)


@njit(cache=True, inline="always")
def _add_context(x, cu, acc):
    k = cu.shape[0]
    for c in range(x.shape[0]):
        xc = x[c]
        base = c * k
        for a in range(k):
            acc[base + a] += xc * cu[a]


@njit(cache=True, inline="always")
def _flush(src, dst, off):
    """dst[off + t] += src[t]; src[t] = 0."""
    for t in range(src.shape[0]):
        dst[off + t] += src[t]
        src[t] = 0.0


@njit(cache=True, inline="always")
def _combine(c1, c0, s1, s0, out):
    """out += c1·s1 + c0·s0 (float64[D] each)."""
    for t in range(out.shape[0]):
        out[t] += c1 * s1[t] + c0 * s0[t]


@njit(cache=True, parallel=True)
def pg_step(fm, w, X, Ystar, p, seed, first_stream, out, g):
    """One batched on-policy step: g += the policy gradient (or the supervised gradient) of the batch.

    fm a BIGRAM feature map; w float64[D]; X float64[B, d] contexts; Ystar int64[B, N] their correct responses;
    p ``StepParams``; row b draws from RNG stream ``first_stream + b`` of ``seed``; out ``StepOut`` (written);
    g float64[D] (accumulated into, like ``grad_batch``). The reward of a row is 1 if Y[b] = y*_b (ORM) or per
    prefix (PRM), else ``p.neg``; see the module docstring for the baselines.
    """
    B = X.shape[0]
    d = X.shape[1]
    k = fm[1]
    D = w.shape[0]
    ET = np.empty((k, k))
    rm = np.empty(k)
    transition_exp(fm, w, d, ET, rm)
    orm = p.mode == STEP_ORM
    by_group = orm and p.baseline != NO_BASELINE and 1 < p.group < B     # the outcome baseline is per group
    rows = max(1, BLOCK // p.group) * p.group if by_group else BLOCK      # blocks of whole groups
    nb = (B + rows - 1) // rows
    # per block: [0] wrong-class or the only accumulator, [1] correct class, [2] the block's combined groups
    acc = np.zeros((nb, 3, D))
    scratch = np.empty((nb, 6, k))
    trans = np.zeros((nb, k * k))
    n_ok = np.zeros(nb, np.int64)
    tbase = d * k
    Y, llstar, logp, prefix, states = out.Y, out.llstar, out.logp, out.prefix, out.states   # plain arrays in prange
    N = Ystar.shape[1]
    for blk in prange(nb):
        u = scratch[blk, 0]
        eu = scratch[blk, 1]
        e = scratch[blk, 2]
        lg = scratch[blk, 3]
        cu = scratch[blk, 4]
        tr = trans[blk]
        lo = blk * rows
        hi = min(B, lo + rows)
        for b in range(lo, hi):
            state = states[b]
            seed_stream(seed, first_stream + b, state)
            if orm:
                ll, lp, npre = pg_step_sequence(fm, w, X[b], Ystar[b], ET, rm, p, state, Y[b], u, eu, e, lg,
                                                cu, tr)
                cls = 1 if npre == N else 0
                _add_context(X[b], cu, acc[blk, cls])
                _flush(tr, acc[blk, cls], tbase)
            else:
                ll, lp, npre = pg_step_sequence(fm, w, X[b], Ystar[b], ET, rm, p, state, Y[b], u, eu, e, lg,
                                                cu, acc[blk, 0, tbase:])
                _add_context(X[b], cu, acc[blk, 0])
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
    reward without baseline, or the supervised and fit modes."""
    return fm[0] == BIGRAM and (mode != "process" or baseline == "none")


pg_step_serial = serial_twin(pg_step)
