"""kernels.steps.grpo — the GRPO family's step (GRPO, RLOO, RAFT, PKPO's pass@k; clipped ratio, k3 KL, entropy
bonus) against the NumPy reference of docs/theory.md §4.9 (tests/reference_online.py): its samples, its
advantages (PKPO's closed form against brute-force enumeration of the k-subsets), its gradient at iteration 0
and at a later iteration where the ratio clips, that gradient against finite differences of the surrogate, and
its invariance to the thread count."""
import math

import numpy as np
import pytest

import onlinepg.kernels as K
from reference import Model, sequence_loglik
from reference_online import (grpo_advantages, grpo_grad, grpo_surrogate, pass_k_advantages_bruteforce,
                              sample_policy_batch)

SEED = 13
FIRST = 3


def _problem(kind, k, N, B, seed=0, wscale=1.5):
    """A problem where a fair share of samples is correct: y* is each context's greedy path under w."""
    rng = np.random.default_rng(seed)
    if kind == "bigram":
        d = 3
        model = Model("bigram", k, N, 1.0, d=d)
        X = np.ascontiguousarray(rng.normal(size=(B, d)))
        J = np.zeros(B, np.int64)
        fm = K.FeatureMap(K.BIGRAM, k, N, 1.0)
    else:
        M = 5
        model = Model("cells", k, N, M=M)
        X = np.zeros((B, 0))
        J = rng.integers(0, M, size=B).astype(np.int64)
        fm = K.FeatureMap(K.CELLS, k, N, 1.0)
    w = wscale * rng.normal(size=model.D)
    Ystar = np.empty((B, N), np.int64)
    for b in range(B):
        prev = 0
        for i in range(N):
            prev = Ystar[b, i] = int(np.argmax(model.phi_matrix(X[b], J[b], i, prev) @ w))
    return model, fm, w, X, J, Ystar


def _step(fm, w, w0, X, J, Ystar, p, it=0, out=None, kernel=None):
    B, N = Ystar.shape
    out = K.step_out(B, N) if out is None else out
    g = np.zeros(w.shape[0])
    (kernel or K.grpo_step)(fm, w, w0, X, J, Ystar, p, SEED, FIRST, it, out, g)
    return out, g


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_k_weight_is_the_subset_enumeration(n):
    """PKPO's s^(loo−1) for binary rewards: the closed form n·C(n−c, k−1)/C(n, k) on the correct samples and 0 on
    the wrong ones equals the definition summed over every k-subset, for every n ≤ 8, c and k."""
    for c in range(n + 1):
        correct = np.array([True] * c + [False] * (n - c))
        for k in range(1, n + 1):
            brute = pass_k_advantages_bruteforce(correct, k)
            closed = np.where(correct, K.pass_k_weight(n, c, k), 0.0)
            np.testing.assert_allclose(closed, brute, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n,k", [(4, 1), (4, 2), (8, 3), (8, 8), (6, 5)])
def test_pass_k_advantages_give_the_gradient_of_pass_at_k(n, k):
    """Unbiasedness, exactly: one context whose policy is correct with probability q = σ(θ) (score 1 − q for a
    correct sample, −q for a wrong one). Over the binomial law of the c correct samples of a group of n,
    E[(1/n) Σ_i A_i ∇_θ log p(y_i)] with the pass_k advantages equals d/dθ pass@k = d/dθ [1 − (1 − q)^k]."""
    for q in (0.05, 0.3, 0.8):
        expect = 0.0
        for c in range(n + 1):
            law = math.comb(n, c) * q ** c * (1 - q) ** (n - c)
            expect += law * c * K.pass_k_weight(n, c, k) * (1 - q) / n      # wrong samples' advantage is 0
        assert expect == pytest.approx(k * (1 - q) ** (k - 1) * q * (1 - q), rel=1e-12)


CASES = [("grpo", "group", 0.0, 0.0), ("grpo", "batch", 0.1, 0.0), ("grpo", "none", 0.0, 0.05),
         ("rloo", "group", 0.0, 0.0), ("rloo", "none", 0.2, 0.02), ("raft", "group", 0.0, 0.0),
         ("raft", "group", 0.1, 0.0), ("pass_k", "group", 0.0, 0.0), ("pass_k", "group", 0.05, 0.01)]


@pytest.mark.parametrize("estimator,scale_rewards,beta,ent", CASES, ids=["-".join(map(str, c)) for c in CASES])
@pytest.mark.parametrize("kind", ["bigram", "cells"])
@pytest.mark.parametrize("reward", ["01", "pm1"])
def test_first_iteration_matches_the_numpy_reference(estimator, scale_rewards, beta, ent, kind, reward):
    """Iteration 0: the kernel's samples are the reference's on-policy draws, its scores and advantages the
    reference's, its gradient the reference's (ratio 1, the KL penalty to a reference w0 ≠ w, the entropy bonus)."""
    B, N, k, G = 40, 4, 3, 4
    model, fm, w, X, J, Ystar = _problem(kind, k, N, B, seed=7)
    w0 = w + 0.3 * np.random.default_rng(1).normal(size=w.shape)
    scale = 1.0 / (B * N)
    p = K.step_params("outcome", reward, "none", G, False, scale, kernel="grpo", estimator=estimator,
                      scale_rewards=scale_rewards, beta=beta, entropy_coeff=ent, pass_k=3)
    out, g = _step(fm, w, w0, X, J, Ystar, p)
    Y = sample_policy_batch(model, w, X, J, SEED, FIRST)
    np.testing.assert_array_equal(out.Y, Y)
    correct = (Y == Ystar).all(axis=1)
    assert 0 < correct.sum() < B, "the problem must mix correct and wrong samples"
    np.testing.assert_array_equal(out.prefix, np.cumprod(Y == Ystar, axis=1).sum(axis=1))
    np.testing.assert_allclose(out.llstar, [sequence_loglik(model, w, X[b], J[b], Ystar[b])[0] for b in range(B)],
                               rtol=1e-12, atol=1e-12)
    lold = np.array([sequence_loglik(model, w, X[b], J[b], Y[b])[2] for b in range(B)])
    lref = np.array([sequence_loglik(model, w0, X[b], J[b], Y[b])[2] for b in range(B)])
    np.testing.assert_allclose(out.lold, lold, rtol=1e-12, atol=1e-12)
    if beta:
        np.testing.assert_allclose(out.lref, lref, rtol=1e-12, atol=1e-12)
    adv = grpo_advantages(correct, -1.0 if reward == "pm1" else 0.0, estimator, G, scale_rewards, pass_k=3)
    np.testing.assert_allclose(out.adv, adv, rtol=1e-12, atol=1e-12)
    ref, clipped = grpo_grad(model, w, X, J, Y, lold, lref, adv, scale, 0.2, 0.2, beta, ent)
    assert clipped == 0.0                       # the ratio is 1 at iteration 0
    np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-13)
    assert np.abs(g).max() > 0


@pytest.mark.parametrize("kind,N,k", [("bigram", 4, 3), ("cells", 4, 3), ("bigram", 12, 2)])
def test_later_iteration_reuses_the_samples_and_clips(kind, N, k):
    """Iteration 1 after the policy moved: the samples, old log-probabilities and advantages are iteration 0's;
    the gradient is the reference's at the new w, with some tokens' ratios clipped and others not, asymmetric
    bounds (ε_low 0.2, ε_high 0.28). (N = 12, k = 2: the bigram path reuses each row many times.)"""
    B, G = 40, 4
    model, fm, w, X, J, Ystar = _problem(kind, k, N, B, seed=5, wscale=1.5 if N < 10 else 3.0)
    w0 = w.copy()
    p = K.step_params("outcome", "01", "none", G, False, 1.0 / (B * N), kernel="grpo", estimator="grpo",
                      scale_rewards="none", epsilon=0.2, epsilon_high=0.28, beta=0.05, iterations=2)
    out, _ = _step(fm, w, w0, X, J, Ystar, p)
    kept = [a.copy() for a in (out.Y, out.lold, out.lref, out.adv, out.llstar, out.prefix)]
    w1 = w + 0.4 * np.random.default_rng(2).normal(size=w.shape)
    out, g = _step(fm, w1, w0, X, J, Ystar, p, it=1, out=out)
    for a, b in zip(kept, (out.Y, out.lold, out.lref, out.adv, out.llstar, out.prefix)):
        np.testing.assert_array_equal(a, b)
    ref, clipped = grpo_grad(model, w1, X, J, out.Y, out.lold, out.lref, out.adv, 1.0 / (B * N), 0.2, 0.28, 0.05, 0.0)
    assert 3 <= clipped * out.Y.size and clipped < 0.9, clipped
    np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("kind", ["bigram", "cells"])
def test_gradient_is_the_surrogates_derivative(kind):
    """The kernel's gradient at a moved policy equals central finite differences of the surrogate J(w) (the clip,
    the k3 KL and the entropy written as values, not as derivatives): this checks the signs and the entropy's
    gradient independently of the coefficient formulas."""
    B, N, k, G = 16, 3, 3, 4
    model, fm, w, X, J, Ystar = _problem(kind, k, N, B, seed=9, wscale=1.0)
    w0 = w + 0.5 * np.random.default_rng(3).normal(size=w.shape)
    p = K.step_params("outcome", "pm1", "none", G, False, 1.0 / (B * N), kernel="grpo", estimator="rloo",
                      scale_rewards="group", epsilon=0.2, epsilon_high=0.28, beta=0.3, entropy_coeff=0.2)
    out, _ = _step(fm, w, w0, X, J, Ystar, p)
    w1 = w + 0.15 * np.random.default_rng(4).normal(size=w.shape)
    out, g = _step(fm, w1, w0, X, J, Ystar, p, it=1, out=out)
    args = (X, J, out.Y, out.lold, out.lref, out.adv, 1.0 / (B * N), 0.2, 0.28, 0.3, 0.2)
    h = 1e-6
    fd = np.empty_like(w1)
    for t in range(w1.size):
        e = np.zeros_like(w1)
        e[t] = h
        fd[t] = (grpo_surrogate(model, w1 + e, *args) - grpo_surrogate(model, w1 - e, *args)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
    assert np.abs(g).max() > 1e-3


def test_same_bits_for_any_thread_count_and_the_serial_twin(num_threads):
    B, N = 100, 6
    model, fm, w, X, J, Ystar = _problem("bigram", 4, N, B, seed=3)
    w0 = 0.5 * w
    p = K.step_params("outcome", "01", "none", 4, False, 1.0 / (B * N), kernel="grpo", beta=0.1, entropy_coeff=0.01,
                      iterations=2)
    results = []
    for kernel, n in ((K.grpo_step, 1), (K.grpo_step, 2), (K.grpo_step_serial, 1)):
        with num_threads(n):
            out, g0 = _step(fm, w, w0, X, J, Ystar, p, kernel=kernel)
            out, g1 = _step(fm, w + 0.01 * g0, w0, X, J, Ystar, p, it=1, out=out, kernel=kernel)
        results.append((out.Y.copy(), out.adv.copy(), g0, g1))
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


def test_raft_with_no_correct_sample_does_not_update():
    B, N = 8, 5
    model, fm, w, X, J, Ystar = _problem("bigram", 3, N, B, seed=1)
    p = K.step_params("outcome", "01", "none", 4, False, 1.0, kernel="grpo", estimator="raft")
    out, g = _step(fm, w, w, X, J, (Ystar + 1) % 3, p)         # y* never drawn where it is the least likely path
    if (out.prefix == N).any():
        pytest.skip("a sample hit the shifted y*")
    assert not out.adv.any() and not g.any()


@pytest.mark.parametrize("bad,match", [(dict(kernel="grpo", mode="process"), "mode must be 'outcome'"),
                                       (dict(estimator="ppo"), "estimator must be one of"),
                                       (dict(scale_rewards="std"), "scale_rewards must be one of"),
                                       (dict(iterations=0), "iterations must be an integer >= 1"),
                                       (dict(beta=-1.0), "beta must be a finite number >= 0"),
                                       (dict(kernel="grpo", estimator="pass_k", pass_k=5, group=4),
                                        r"pass_k must be an integer in \[1, group = 4\]")])
def test_step_params_refuses_bad_grpo_fields(bad, match):
    kw = dict(mode="outcome", reward="01", kernel="grpo", group=4)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        K.step_params(**kw)
