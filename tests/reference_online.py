"""Plain NumPy / Python references of the per-round online algorithms (docs/theory.md §3–§4) and of the paper-mode
batched policy gradient (docs/theory.md §4.5).

Written from docs/theory.md, with dense features φ built explicitly (``reference.Model``), logits ⟨w, φ⟩ and score
gradients Σ_i A_i (φ(y_i) − Σ_a p_a φ(a)). The only thing shared with the kernels is the random stream: the
references call the kernels' RNG primitives (``seed_stream``, ``uniform``, ``randint``) in the order the
kernels document, so that the sampled responses — and hence everything else — can be compared exactly.
Categorical draws use the inverse CDF on the unnormalised weights exp(l − max) with target u · Σ weights.
"""
import math

import numpy as np

import onlinepg.kernels as K
from reference import Model, behaviour_logq, log_softmax, position_logits, score_grad, sequence_loglik

# counters, in kernel order (kernels.codes.COUNTERS)
from onlinepg.kernels.codes import (C_MIST_EXPECTED as MIST_EXPECTED, C_MIST_SAMPLED as MIST_SAMPLED,  # noqa: E402
                                    C_ORM as ORM, C_PRM as PRM, C_ROUNDS as ROUNDS, C_TOKENS as TOKENS,
                                    C_UPDATES as UPDATES)
BEHAVIOURS = tuple(K.BEHAVIOURS)


# ----------------------------------------------------------------------------------------- randomness


class Stream:
    """One RNG stream (seed, stream) driven through the kernels' own primitives."""

    def __init__(self, seed, stream):
        self.state = np.zeros(4, np.uint64)
        K.seed_stream(seed, stream, self.state)

    def uniform(self):
        return float(K.uniform(self.state))

    def randint(self, n):
        return int(K.randint(self.state, n))


def categorical(logits, rng):
    """Inverse-CDF draw from softmax(logits): first a whose cumulative weight exceeds u · Σ weights."""
    logits = np.asarray(logits, dtype=float)
    m = float(np.max(logits))
    wts = np.exp(logits - m)
    s = float(np.sum(wts))
    target = rng.uniform() * s
    acc = 0.0
    for a in range(len(wts)):
        acc += wts[a]
        if acc > target and wts[a] > 0.0:
            return a
    a = len(wts) - 1
    while a > 0 and wts[a] <= 0.0:
        a -= 1
    return a


# ------------------------------------------------------------------------------------------ model


def logits_at(model, w, x, j, i, prev):
    return model.phi_matrix(x, j, i, prev) @ w


def sample_response(model, w, w0, x, j, behaviour, eps, rng):
    """Draw y from the behaviour; return (y, log p_w(y|x), log q(y|x)).

    Randomness per draw: 'mixture' first draws one uniform (< ½: the whole sequence from the base, else
    uniform tokens); then per token 'policy' / 'base' one categorical, 'uniform' one randint, 'mixture' one
    categorical (base) or one randint, 'eps_mixture' one uniform (< ε: a randint, else a policy categorical).
    """
    k, N = model.k, model.N
    y = np.zeros(N, np.int64)
    from_base = behaviour == "base"
    if behaviour == "mixture":
        from_base = rng.uniform() < 0.5
    prev = 0
    for i in range(N):
        lg = logits_at(model, w, x, j, i, prev)
        if behaviour == "policy":
            a = categorical(lg, rng)
        elif behaviour == "uniform":
            a = rng.randint(k)
        elif behaviour in ("base", "mixture"):
            if from_base:
                a = categorical(logits_at(model, w0, x, j, i, prev), rng)
            else:
                a = rng.randint(k)
        else:  # eps_mixture
            if rng.uniform() < eps:
                a = rng.randint(k)
            else:
                a = categorical(lg, rng)
        y[i] = a
        prev = a
    logp = sequence_loglik(model, w, x, j, y)[0]
    logq = behaviour_logq(model, w, w0, x, j, y, behaviour, eps)
    return y, logp, logq


def update(rule, w, g, lr, G2):
    """w, G2 updated in place; returns (η, ‖g‖²). adaptive η = 1/(4 + 2‖g‖²); constant η = lr;
    adagrad G2 += g², w += lr·g/(√G2 + 1e-10) (η reported as lr)."""
    gsq = float(np.dot(g, g))
    if rule == "adagrad":
        G2 += g * g
        w += lr * g / (np.sqrt(G2) + 1e-10)
        return lr, gsq
    eta = 1.0 / (4.0 + 2.0 * gsq) if rule == "adaptive" else lr
    w += eta * g
    return eta, gsq


def prefix_len(y, ystar):
    """Length of the longest correct prefix."""
    for i in range(len(y)):
        if y[i] != ystar[i]:
            return i
    return len(y)


# --------------------------------------------------------------------------------- online algorithms


DEFAULT_PARAMS = dict(algo="sgd", lr_rule="adaptive", lr=0.1, behaviour="policy", eps=0.1, reward="01",
                      baseline="none", group_size=1, std_scale=False, iw_clip=0.0, m=8, m_tok=8,
                      variant="explore")


def online_rounds(model, params, w, w0, G2, X, J, Ystar, first, seed, counters, trace_every=1):
    """Reference of the per-round kernels (``kernels.rounds``): plays len(J) rounds, updates w, G2, counters in place and
    returns the trace rows (list of 14-value lists) of the rounds t with t % trace_every == 0."""
    p = dict(DEFAULT_PARAMS, **params)
    algo = p["algo"]
    k, N = model.k, model.N
    neg = -1.0 if p["reward"] == "pm1" else 0.0
    rows = []
    for r in range(len(J)):
        t = first + r
        x, j, ystar = X[r], int(J[r]), np.asarray(Ystar[r])
        rng = Stream(seed, t)
        # progressive validation: score w_t before anything else
        llstar = sequence_loglik(model, w, x, j, ystar)[0]
        counters[MIST_EXPECTED] += 1.0 - math.exp(llstar)
        orm = prm = tokens = 0
        reward = 0.0
        g = np.zeros(model.D)
        # committed response ŷ_t
        if algo in ("perceptron", "banditron"):
            lp, _ = log_softmax(logits_at(model, w, x, j, 0, 0))
            best = int(np.argmax(lp))
            played = best
            if algo == "banditron":     # ε-greedy play: one uniform, then (with probability ε) one randint
                played = rng.randint(k) if rng.uniform() < p["eps"] else best
                tokens += 1
                orm += 1
            yc = np.array([played], np.int64)
            logpc = float(lp[played])
        else:
            yc, logpc, _ = sample_response(model, w, w0, x, j, "policy", 0.0, rng)
            tokens += N
        correct = bool(np.array_equal(yc, ystar))
        if not correct:
            counters[MIST_SAMPLED] += 1.0
        # learning
        if algo == "sgd":
            g = score_grad(model, w, x, j, ystar, np.ones(N))
            reward = 1.0
        elif algo == "perceptron":
            if not correct:
                g = model.phi(x, j, 0, 0, int(ystar[0])) - model.phi(x, j, 0, 0, int(yc[0]))
            reward = 1.0 if correct else 0.0
        elif algo == "banditron":
            # Kakade et al. 2008: w += 1[ỹ = y*]/P(ỹ)·φ(x, ỹ) − φ(x, ŷ), P = (1 − ε)·δ_ŷ + ε/k
            prob = (1.0 - p["eps"]) * (played == best) + p["eps"] / k
            g = -model.phi(x, j, 0, 0, best)
            if correct:
                g = g + model.phi(x, j, 0, 0, played) / prob
            reward = 1.0 if correct else 0.0
        elif algo == "pg":
            G = max(p["group_size"], 1)
            samples = []
            for s in range(G):
                if s == 0 and p["behaviour"] == "policy":
                    samples.append((yc, logpc, logpc))
                else:
                    samples.append(sample_response(model, w, w0, x, j, p["behaviour"], p["eps"], rng))
                    tokens += N
                orm += 1
            rew = np.array([1.0 if np.array_equal(y, ystar) else neg for y, _, _ in samples])
            mean = float(rew.mean())
            reward = mean
            for s, (y, lp_, lq_) in enumerate(samples):
                a = rew[s]
                if p["baseline"] in ("group_mean", "batch_mean"):
                    a -= mean
                elif p["baseline"] == "loo" and G > 1:
                    a -= (rew.sum() - rew[s]) / (G - 1)
                if p["std_scale"] and G > 1:
                    a /= float(np.std(rew, ddof=1)) + 1e-8
                if p["iw_clip"] > 0.0:
                    z = p["iw_clip"]
                    a *= float(np.clip(np.exp(lp_ - lq_), 1.0 / z, z))
                if a != 0.0:
                    g += score_grad(model, w, x, j, y, np.full(N, a)) / G
        elif algo == "best_of_m":
            orm += 1
            found = yc if correct else None
            if found is None:
                for _ in range(p["m"]):
                    y, _, _ = sample_response(model, w, w0, x, j, "mixture", 0.0, rng)
                    tokens += N
                    orm += 1
                    if np.array_equal(y, ystar):
                        found = y
                        break
            if found is not None:
                reward = 1.0
                g = score_grad(model, w, x, j, found, np.ones(N))
        elif algo == "pg_process":
            variant = p["variant"]
            if variant == "on_policy":
                L = prefix_len(yc, ystar)
                prm += N
                adv = np.where(np.arange(N) < L, 1.0, neg)
                reward = L / N
                g = score_grad(model, w, x, j, yc, adv)
            else:
                prm += 1                      # the whole rollout checked once
                if correct:
                    L = N
                else:
                    L = 0
                    if variant == "binary_search":
                        lo, hi = 0, N - 1     # prefix of length lo is correct, of length N is not
                        while lo < hi:
                            mid = (lo + hi + 1) // 2
                            prm += 1
                            if prefix_len(yc[:mid], ystar[:mid]) == mid:
                                lo = mid
                            else:
                                hi = mid - 1
                        L = lo
                        assert L == prefix_len(yc, ystar)
                    while L < N:
                        prev = int(ystar[L - 1]) if L > 0 else 0
                        lg0 = logits_at(model, w0, x, j, L, prev)
                        hit = False
                        for _ in range(p["m_tok"]):
                            if rng.uniform() < 0.5:
                                a = rng.randint(k)
                            else:
                                a = categorical(lg0, rng)
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
                    g = score_grad(model, w, x, j, ystar, np.where(np.arange(N) < L, 1.0, 0.0))
        else:
            raise ValueError(algo)
        # update
        eta = 0.0
        gsq = float(np.dot(g, g))
        if gsq > 0.0:
            if algo in ("perceptron", "banditron"):
                w += g
                eta = 1.0
            else:
                eta, gsq = update(p["lr_rule"], w, g, p["lr"], G2)
            counters[UPDATES] += 1
        counters[ROUNDS] += 1
        counters[ORM] += orm
        counters[PRM] += prm
        counters[TOKENS] += tokens
        if t % trace_every == 0:
            rows.append([t, j, reward, 1.0 if correct else 0.0, counters[ORM], counters[PRM], counters[TOKENS],
                         counters[UPDATES], counters[MIST_SAMPLED], counters[MIST_EXPECTED], llstar, logpc,
                         eta, math.sqrt(gsq)])
    return rows


# ------------------------------------------------------------------------------- paper-mode batched PG


def batch_advantages(r, baseline, G, std_scale):
    """docs/theory.md §4.5 advantages of rewards r (B,) or (B, N). batch_mean: mean over the whole batch (per
    position for process rewards); group_mean / loo: over the G consecutive samples of each context — loo with G = 1
    (one sample per context) leaves one out of the whole batch; std_scale divides by the same group's sample
    std (ddof 1) + 1e-8."""
    r = np.asarray(r, dtype=float)
    if baseline == "none":
        return r.copy()
    B = r.shape[0]
    size = B if baseline == "batch_mean" or (baseline == "loo" and G == 1) else G
    out = np.empty_like(r)
    for start in range(0, B, size):
        grp = r[start:start + size]
        n = grp.shape[0]
        mean = grp.mean(axis=0)
        if baseline == "loo" and n > 1:
            adv = grp - (grp.sum(axis=0) - grp) / (n - 1)
        else:
            adv = grp - mean
        if std_scale and n > 1:
            adv = adv / (grp.std(axis=0, ddof=1) + 1e-8)
        out[start:start + n] = adv
    return out


def pg_batch_step(model, w, G2, X, J, Ystar, Y, reward_type, reward, baseline, G, std_scale, lr):
    """One Adagrad step on the loss −mean_{b,i} A_{b,i} log p_w(Y_{b,i}|·) given the sampled responses Y.
    Updates w, G2 in place; returns the gradient of Σ A log p / (B·N)."""
    B, N = Y.shape
    neg = -1.0 if reward == "pm1" else 0.0
    ok = np.cumprod(Y == Ystar, axis=1).astype(bool)
    if reward_type == "process":
        r = np.where(ok, 1.0, neg)
    else:
        r = np.where(ok[:, -1], 1.0, neg)
    A = batch_advantages(r, baseline, G, std_scale)
    if A.ndim == 1:
        A = np.repeat(A[:, None], N, axis=1)
    g = np.zeros(model.D)
    for b in range(B):
        g += score_grad(model, w, X[b], int(J[b]), Y[b], A[b])
    g /= B * N
    if np.dot(g, g) > 0.0:
        update("adagrad", w, g, lr, G2)
    return g


def sample_policy_batch(model, w, X, J, seed, first_stream):
    """On-policy samples, row b from RNG stream first_stream + b."""
    Y = np.zeros((len(J), model.N), np.int64)
    for b in range(len(J)):
        Y[b] = sample_response(model, w, w, X[b], int(J[b]), "policy", 0.0, Stream(seed, first_stream + b))[0]
    return Y


# ------------------------------------------------------------------------------- the GRPO family (§4.9)


def pass_k_advantages_bruteforce(correct, k):
    """n · s^(loo−1)_i of PKPO for one group's binary rewards, by enumerating every k-subset I ∋ i:
    s_i = C(n, k)⁻¹ Σ_{I ∋ i} [max_{j∈I} r_j − max_{j∈I∖i} r_j] (the max over an empty set is 0)."""
    from itertools import combinations
    r = np.asarray(correct, dtype=float)
    n = len(r)
    subsets = list(combinations(range(n), k))
    s = np.zeros(n)
    for I in subsets:
        top = max(r[j] for j in I)
        for i in I:
            rest = [r[j] for j in I if j != i]
            s[i] += top - (max(rest) if rest else 0.0)
    return n * s / len(subsets)


def grpo_advantages(correct, neg, estimator, G, scale_rewards, pass_k=1):
    """docs/theory.md §4.9 advantages of one batch (B,) of outcomes (True: the response is y*), groups of G
    consecutive rows: grpo (mean removed), rloo (the others' mean removed), both scaled by the group's / the
    batch's std (ddof 1) + 1e-4 unless scale_rewards is 'none'; raft B/(n correct) on the correct rows; pass_k
    by brute force."""
    correct = np.asarray(correct, dtype=bool)
    r = np.where(correct, 1.0, neg)
    B = len(r)
    if estimator == "raft":
        n = correct.sum()
        return np.where(correct, B / max(n, 1), 0.0)
    out = np.empty(B)
    sd_batch = r.std(ddof=1)
    for lo in range(0, B, G):
        grp = r[lo:lo + G]
        if estimator == "pass_k":
            out[lo:lo + G] = pass_k_advantages_bruteforce(correct[lo:lo + G], pass_k)
            continue
        a = grp - (grp.sum() - grp) / (G - 1) if estimator == "rloo" else grp - grp.mean()
        if scale_rewards == "group":
            a = a / (grp.std(ddof=1) + 1e-4)
        elif scale_rewards == "batch":
            a = a / (sd_batch + 1e-4)
        out[lo:lo + G] = a
    return out


def grpo_surrogate(model, w, X, J, Y, lold, lref, adv, scale, eps_low, eps_high, beta, entropy_coeff):
    """The GRPO surrogate J(w) = scale Σ_b Σ_i [min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A) − β k3 + c_H H] at w, for
    fixed samples Y with their old and reference token log-probabilities (docs/theory.md §4.9)."""
    total = 0.0
    for b in range(len(Y)):
        L = position_logits(model, w, X[b], int(J[b]), Y[b])
        for i in range(model.N):
            lp, _ = log_softmax(L[i])
            lt = lp[int(Y[b, i])]
            rho = math.exp(lt - lold[b, i])
            A = adv[b]
            total += min(rho * A, min(max(rho, 1 - eps_low), 1 + eps_high) * A)
            d = lref[b, i] - lt
            total -= beta * (math.exp(d) - d - 1.0)
            total += entropy_coeff * float(-(np.exp(lp) * lp).sum())
    return scale * total


def grpo_grad(model, w, X, J, Y, lold, lref, adv, scale, eps_low, eps_high, beta, entropy_coeff):
    """∇ of ``grpo_surrogate`` at w, from dense φ: per token, the score coefficient ρA where the min takes the
    unclipped term, −β(1 − exp(l_ref − l)), and the entropy's gradient Σ_a −p_a (log p_a + H) φ_a. Also returns
    the fraction of tokens whose ratio was clipped."""
    g = np.zeros(model.D)
    clipped = 0
    for b in range(len(Y)):
        prev = 0
        for i in range(model.N):
            Phi = model.phi_matrix(X[b], int(J[b]), i, prev)
            lp, _ = log_softmax(Phi @ w)
            p = np.exp(lp)
            y = int(Y[b, i])
            rho = math.exp(lp[y] - lold[b, i])
            A = adv[b]
            unclipped = rho * A <= min(max(rho, 1 - eps_low), 1 + eps_high) * A
            clipped += A != 0 and not unclipped
            c = (rho * A if unclipped else 0.0) - beta * (1.0 - math.exp(lref[b, i] - lp[y]))
            score = Phi[y] - p @ Phi
            H = -(p * lp).sum()
            g += scale * (c * score + entropy_coeff * ((-p * (lp + H)) @ Phi))
            prev = y
    return g, clipped / Y.size


__all__ = ["Model", "Stream", "categorical", "sample_response", "online_rounds", "pg_batch_step",
           "batch_advantages", "sample_policy_batch", "update", "BEHAVIOURS", "grpo_advantages", "grpo_grad",
           "grpo_surrogate", "pass_k_advantages_bruteforce"]
