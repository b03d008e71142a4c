"""Per-round online algorithms (docs/theory.md §4): one jitted loop over a chunk of rounds.

``run_rounds`` plays rounds ``first … first+R−1`` of a stream. Round t draws all its randomness from RNG
stream t of ``seed``, so a run cut into chunks of any size, or resumed at any chunk boundary, replays the
same rounds bit for bit. Progressive validation: each round first scores the current policy w_t on the
round's context — exact log p_{w_t}(y*|x) and the response ŷ_t the learner commits to (an on-policy sample;
argmax for the perceptron) — and only then learns.

Counters (float64[NCOUNT], cumulative, updated in place; all but ``mistakes_expected`` are integers):
"""
import math

import numpy as np
from numba import njit

from .features import BIGRAM, finish_grad, prepare, token_grad, token_logits
from .rng import randint, seed_stream, uniform
from .sequence import (MIXTURE, POLICY, accumulate_grad, sample_sequence, sequence_loglik)
from .softmax import FAST, inverse_cdf, logsumexp, row_max, sample_categorical, shifted_exp
from .updates import ADAGRAD, ADAPTIVE, adaptive_lr, apply_update, clipped_importance_weight

# algorithms
SGD = 0
PG = 1
BEST_OF_M = 2      # Algorithm 1; its details are a reconstruction (docs/theory.md §4.3)
PG_PROCESS = 3     # Algorithm 2 and variants; details are a reconstruction (docs/theory.md §4.4)
PERCEPTRON = 4

# process-reward variants
EXPLORE = 0        # Algorithm 2: rebuild token by token with up to m_tok candidates per position
BINARY_SEARCH = 1  # keep the rollout's correct prefix, found by binary search over prefix checks
ON_POLICY_PRM = 2  # A_i = r_i on the on-policy rollout

# baselines for groups of G samples per round
NO_BASELINE = 0
GROUP_MEAN = 1
LEAVE_ONE_OUT = 2

# integer parameters: IP[...] indices
IP_ALGO, IP_BEHAVIOUR, IP_PM1, IP_BASELINE, IP_G, IP_M, IP_MTOK, IP_VARIANT, IP_RULE, IP_STD = range(10)
N_IP = 10
# float parameters
FP_LR, FP_EPS, FP_ZETA = range(3)
N_FP = 3

# counters
(C_ROUNDS, C_UPDATES, C_ORM, C_PRM, C_TOKENS, C_MIST_SAMPLED, C_MIST_EXPECTED) = range(7)
NCOUNT = 7

# per-round trace columns (float64 rows; integer-valued columns are exact)
(T_ROUND, T_CONTEXT, T_REWARD, T_CORRECT, T_ORM, T_PRM, T_TOKENS, T_UPDATES, T_MIST_SAMPLED,
 T_MIST_EXPECTED, T_LOGLIK_STAR, T_SAMPLED_LOGPROB, T_LR, T_GRAD_NORM) = range(14)
NTRACE = 14


@njit(cache=True)
def _equal(a, b):
    for i in range(a.shape[0]):
        if a[i] != b[i]:
            return False
    return True


@njit(cache=True)
def _correct_prefix_len(y, ystar):
    for i in range(y.shape[0]):
        if y[i] != ystar[i]:
            return i
    return y.shape[0]


@njit(cache=True)
def is_fast_bandit(ip, fp, fm):
    """N = 1 on-policy outcome-reward PG with one sample and no baseline, IW or Adagrad on a bigram map:
    the bandit-multiclass round, fused by ``bandit_round``."""
    return (ip[IP_ALGO] == PG and fm[0] == BIGRAM and fm[2] == 1 and ip[IP_BEHAVIOUR] == POLICY
            and max(ip[IP_G], 1) == 1 and ip[IP_BASELINE] == NO_BASELINE and fp[FP_ZETA] == 0.0
            and ip[IP_RULE] != ADAGRAD)


@njit(cache=True, fastmath=FAST)
def bandit_round(fm, w, x, ystar, state, pm1, rule, lr, u, e, coef):
    """One fused N = 1 round: scores u = xᵀW1 once, the exact log p(y*|x), one on-policy draw (one uniform,
    as the generic path), the reward, and the update w[W1] += η·x ⊗ coef written in place — no gradient
    buffer, no second or third pass over xᵀW1. ‖g‖² = ‖x‖²·‖coef‖² since g = x ⊗ coef.

    Returns (log p(y*|x), log p(ŷ|x), ŷ == y*, reward, η, ‖g‖²)."""
    k = fm[1]
    d = x.shape[0]
    prepare(fm, w, x, 0, u)
    m = row_max(u)
    s = shifted_exp(u, m, e)
    lse = m + math.log(s)
    a = inverse_cdf(e, uniform(state) * s)
    correct = a == ystar
    reward = 1.0 if correct else (-1.0 if pm1 else 0.0)
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
def run_rounds(ip, fp, fm, w, w0, G2, X, J, Ystar, first, seed, counters, trace_every, trace):
    """Play len(X) rounds; return the number of trace rows written.

    ip int64[N_IP], fp float64[N_FP]: algorithm parameters (see the IP_* / FP_* indices).
    w float64[D] (updated), w0 float64[D] base model, G2 float64[D] Adagrad state (updated).
    X float64[R, d], J int64[R], Ystar int64[R, N]: the chunk's contexts and correct responses.
    first: global index of the chunk's first round; seed: the run's sampling seed.
    counters float64[NCOUNT] (updated); trace float64[≥ R // trace_every + 1, NTRACE]: a row is written for
    every round t with t % trace_every == 0, holding the counters after that round.
    """
    k = fm[1]
    N = fm[2]
    D = w.shape[0]
    algo = ip[IP_ALGO]
    G = max(ip[IP_G], 1)
    Ys = np.empty((G, N), np.int64)
    lses = np.empty((G, N))
    logps = np.empty(G)
    logqs = np.empty(G)
    rewards = np.empty(G)
    yc = np.empty(N, np.int64)
    lsec = np.empty(N)
    ytry = np.empty(N, np.int64)
    lsetry = np.empty(N)
    adv = np.empty(N)
    tok = np.empty(N)
    g = np.zeros(D)
    u = np.empty(k)
    u0 = np.empty(k)
    lg = np.empty(k)
    lg0 = np.empty(k)
    e = np.empty(k)
    coef = np.empty(k)
    cu = np.empty(k)
    state = np.empty(4, np.uint64)
    fast_bandit = is_fast_bandit(ip, fp, fm)
    rows = 0
    for r in range(X.shape[0]):
        t = first + r
        x = X[r]
        j = J[r]
        ystar = Ystar[r]
        seed_stream(seed, t, state)
        if fast_bandit:
            llstar, logpc, correct, reward, eta, gsq = bandit_round(fm, w, x, ystar[0], state, ip[IP_PM1],
                                                                   ip[IP_RULE], fp[FP_LR], u, e, coef)
            counters[C_MIST_EXPECTED] += 1.0 - math.exp(llstar)
            if not correct:
                counters[C_MIST_SAMPLED] += 1.0
            orm = 1
            prm = 0
            tokens = 1
            if gsq > 0.0:
                counters[C_UPDATES] += 1.0
        else:
            llstar, _ = sequence_loglik(fm, w, x, j, ystar, tok, u, lg)
            counters[C_MIST_EXPECTED] += 1.0 - math.exp(llstar)
            for q in range(D):
                g[q] = 0.0
            orm = 0
            prm = 0
            tokens = 0
            reward = 0.0
            # --- the committed response ŷ_t and its score -------------------------------------------------
            if algo == PERCEPTRON:
                prepare(fm, w, x, j, u)
                token_logits(fm, w, x, j, u, yc, 0, lg)
                best = 0
                for a in range(1, k):
                    if lg[a] > lg[best]:
                        best = a
                yc[0] = best
                logpc = lg[best] - logsumexp(lg)
            else:
                logpc, _ = sample_sequence(fm, w, w0, x, j, POLICY, 0.0, state, yc, lsec, u, u0, lg, lg0, e)
                tokens += N
            correct = _equal(yc, ystar)
            if not correct:
                counters[C_MIST_SAMPLED] += 1.0
            # --- learning ------------------------------------------------------------------------------------
            if algo == SGD:
                for i in range(N):
                    adv[i] = 1.0
                accumulate_grad(fm, w, x, j, ystar, adv, tok, False, 1.0, g, u, lg, coef, cu)
                reward = 1.0
            elif algo == PERCEPTRON:
                if not correct:
                    for a in range(k):
                        coef[a] = 0.0
                        cu[a] = 0.0
                    coef[ystar[0]] = 1.0
                    coef[yc[0]] = -1.0
                    token_grad(fm, x, j, ystar, 0, coef, cu, g)
                    finish_grad(fm, x, j, cu, g)
                reward = 1.0 if correct else 0.0
            elif algo == PG:
                behaviour = ip[IP_BEHAVIOUR]
                for s in range(G):
                    if s == 0 and behaviour == POLICY:
                        Ys[0, :] = yc
                        lses[0, :] = lsec
                        logps[0] = logpc
                        logqs[0] = logpc
                    else:
                        lp, lq = sample_sequence(fm, w, w0, x, j, behaviour, fp[FP_EPS], state, Ys[s], lses[s],
                                                 u, u0, lg, lg0, e)
                        logps[s] = lp
                        logqs[s] = lq
                        tokens += N
                    ok = _equal(Ys[s], ystar)
                    rewards[s] = 1.0 if ok else (-1.0 if ip[IP_PM1] else 0.0)
                    orm += 1
                mean_r = 0.0
                for s in range(G):
                    mean_r += rewards[s]
                mean_r /= G
                reward = mean_r
                sd = 0.0
                if ip[IP_STD] and G > 1:
                    for s in range(G):
                        sd += (rewards[s] - mean_r) ** 2
                    sd = math.sqrt(sd / (G - 1))
                for s in range(G):
                    a_s = rewards[s]
                    if ip[IP_BASELINE] == GROUP_MEAN:
                        a_s -= mean_r
                    elif ip[IP_BASELINE] == LEAVE_ONE_OUT and G > 1:
                        a_s -= (mean_r * G - rewards[s]) / (G - 1)
                    if ip[IP_STD] and G > 1:
                        a_s /= sd + 1e-8
                    if fp[FP_ZETA] > 0.0:
                        a_s *= clipped_importance_weight(logps[s], logqs[s], fp[FP_ZETA])
                    if a_s != 0.0:
                        for i in range(N):
                            adv[i] = a_s
                        accumulate_grad(fm, w, x, j, Ys[s], adv, lses[s], True, 1.0 / G, g, u, lg, coef, cu)
            elif algo == BEST_OF_M:
                orm += 1
                found = correct
                if found:
                    ytry[:] = yc
                    lsetry[:] = lsec
                else:
                    for _ in range(ip[IP_M]):
                        sample_sequence(fm, w, w0, x, j, MIXTURE, 0.0, state, ytry, lsetry, u, u0, lg, lg0, e)
                        tokens += N
                        orm += 1
                        if _equal(ytry, ystar):
                            found = True
                            break
                if found:
                    reward = 1.0
                    for i in range(N):
                        adv[i] = 1.0
                    accumulate_grad(fm, w, x, j, ytry, adv, lsetry, True, 1.0, g, u, lg, coef, cu)
            else:  # PG_PROCESS
                variant = ip[IP_VARIANT]
                neg = -1.0 if ip[IP_PM1] else 0.0
                if variant == ON_POLICY_PRM:
                    L = _correct_prefix_len(yc, ystar)
                    prm += N
                    for i in range(N):
                        adv[i] = 1.0 if i < L else neg
                    reward = L / N
                    accumulate_grad(fm, w, x, j, yc, adv, lsec, True, 1.0, g, u, lg, coef, cu)
                else:
                    prm += 1  # check the whole rollout: one prefix check of length N
                    if correct:
                        L = N
                    else:
                        L = 0
                        if variant == BINARY_SEARCH:
                            # largest L with ŷ_{≤L} correct, given ŷ_{≤N} is not: search (lo, hi]
                            lo = 0
                            hi = N - 1
                            while lo < hi:
                                mid = (lo + hi + 1) // 2
                                prm += 1
                                if _correct_prefix_len(yc[:mid], ystar[:mid]) == mid:
                                    lo = mid
                                else:
                                    hi = mid - 1
                            L = lo
                        # extend the correct prefix token by token from ½ base + ½ uniform candidates
                        prepare(fm, w0, x, j, u0)
                        while L < N:
                            token_logits(fm, w0, x, j, u0, ystar, L, lg0)
                            hit = False
                            for _ in range(ip[IP_MTOK]):
                                if uniform(state) < 0.5:
                                    a = randint(state, k)
                                else:
                                    a, _z = sample_categorical(lg0, e, state)
                                tokens += 1
                                prm += 1
                                if a == ystar[L]:
                                    hit = True
                                    break
                            if not hit:
                                break
                            L += 1
                    reward = L / N
                    if L > 0:
                        for i in range(N):
                            adv[i] = 1.0 if i < L else 0.0
                        accumulate_grad(fm, w, x, j, ystar, adv, tok, False, 1.0, g, u, lg, coef, cu)
            # --- update --------------------------------------------------------------------------------------
            eta = 0.0
            gsq = 0.0
            for q in range(D):
                gsq += g[q] * g[q]
            if gsq > 0.0:
                if algo == PERCEPTRON:
                    for q in range(D):
                        w[q] += g[q]
                    eta = 1.0
                else:
                    eta, gsq = apply_update(ip[IP_RULE], w, g, fp[FP_LR], G2)
                counters[C_UPDATES] += 1.0
        counters[C_ROUNDS] += 1.0
        counters[C_ORM] += orm
        counters[C_PRM] += prm
        counters[C_TOKENS] += tokens
        if t % trace_every == 0:
            row = trace[rows]
            row[T_ROUND] = t
            row[T_CONTEXT] = j
            row[T_REWARD] = reward
            row[T_CORRECT] = 1.0 if correct else 0.0
            row[T_ORM] = counters[C_ORM]
            row[T_PRM] = counters[C_PRM]
            row[T_TOKENS] = counters[C_TOKENS]
            row[T_UPDATES] = counters[C_UPDATES]
            row[T_MIST_SAMPLED] = counters[C_MIST_SAMPLED]
            row[T_MIST_EXPECTED] = counters[C_MIST_EXPECTED]
            row[T_LOGLIK_STAR] = llstar
            row[T_SAMPLED_LOGPROB] = logpc
            row[T_LR] = eta
            row[T_GRAD_NORM] = math.sqrt(gsq)
            rows += 1
    return rows
