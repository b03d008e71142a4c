"""kernels.steps — the batched step kernels (the fused ``pg_step`` and the general ``separate_step``) against the
NumPy reference of the paper mode (tests/reference_online.py: sampling from per-row streams, rewards, every
baseline, the score-function gradient), their invariance to the thread count, the exact-logit fallback, and
``binary_advantages`` against ``group_advantages``."""
import numpy as np
import pytest

import onlinepg.kernels as K
from reference import Model, score_grad, sequence_loglik
from reference_online import pg_batch_step, sample_policy_batch

SEED = 11
FIRST = 5


def _problem(k, N, d, B, seed=0, wscale=1.5):
    """A bigram problem where a fair share of the samples is correct: y* is each context's greedy path under w."""
    rng = np.random.default_rng(seed)
    model = Model("bigram", k, N, 1.0, d=d)
    w = wscale * rng.normal(size=model.D)
    X = np.ascontiguousarray(rng.normal(size=(B, d)))
    Ystar = np.empty((B, N), np.int64)
    for b in range(B):
        prev = 0
        for i in range(N):
            logits = model.phi_matrix(X[b], 0, i, prev) @ w
            prev = Ystar[b, i] = int(np.argmax(logits))
    fm = K.FeatureMap(K.BIGRAM, k, N, 1.0)
    return model, fm, w, X, Ystar


def _run(fm, w, X, Ystar, params, kernel=None, J=None):
    B, N = Ystar.shape
    out = K.step_out(B, N)
    g = np.zeros(w.shape[0])
    J = np.zeros(B, np.int64) if J is None else J
    (kernel or K.pg_step)(fm, w, w, X, J, Ystar, params, SEED, FIRST, 0, out, g)
    return out, g


CASES = [("outcome", "pm1", "none", 1, False), ("outcome", "01", "none", 1, False),
         ("outcome", "pm1", "batch_mean", 1, False), ("outcome", "01", "batch_mean", 1, True),
         ("outcome", "pm1", "group_mean", 4, False), ("outcome", "pm1", "group_mean", 5, True),
         ("outcome", "01", "loo", 1, False), ("outcome", "pm1", "loo", 4, False), ("outcome", "pm1", "loo", 8, True),
         ("process", "pm1", "none", 1, False), ("process", "01", "none", 1, False),
         ("supervised", "pm1", "none", 1, False), ("fit", "pm1", "none", 1, False)]
SEPARATE_ONLY = [("process", "pm1", "batch_mean", 1, False), ("process", "01", "group_mean", 4, True),
                 ("process", "pm1", "loo", 5, False)]      # per-prefix baselines: separate_step only
KERNEL_CASES = ([("fused",) + c for c in CASES] + [("separate",) + c for c in CASES + SEPARATE_ONLY])


@pytest.mark.parametrize("kind,mode,reward,baseline,G,std", KERNEL_CASES,
                         ids=["-".join(map(str, c)) for c in KERNEL_CASES])
@pytest.mark.parametrize("k,N", [(3, 4), (2, 6)])
def test_matches_the_numpy_reference(kind, mode, reward, baseline, G, std, k, N):
    B = 40                                        # two blocks of rows (and groups of 4, 5, 8 inside them)
    model, fm, w, X, Ystar = _problem(k, N, 3, B, seed=k * 10 + N)
    params = K.step_params(mode, reward, baseline, G, std, 1.0 / (B * N), kernel=kind)
    out, g = _run(fm, w, X, Ystar, params, K.STEPS[kind][0])
    J = np.zeros(B, np.int64)
    if mode == "fit":          # nothing sampled: y*'s likelihood and the supervised gradient only
        np.testing.assert_allclose(out.llstar, [sequence_loglik(model, w, X[b], 0, Ystar[b])[0] for b in range(B)],
                                   rtol=1e-12, atol=1e-12)
        ref = sum(score_grad(model, w, X[b], 0, Ystar[b], np.ones(N)) for b in range(B)) / (B * N)
        np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-14)
        assert not out.prefix.any() and not out.logp.any()
        return
    Y = sample_policy_batch(model, w, X, J, SEED, FIRST)
    np.testing.assert_array_equal(out.Y, Y)
    prefix = np.cumprod(Y == Ystar, axis=1).sum(axis=1)
    np.testing.assert_array_equal(out.prefix, prefix)
    assert 0 < (prefix == N).sum() < B, "the problem must mix correct and wrong samples"
    np.testing.assert_allclose(out.llstar, [sequence_loglik(model, w, X[b], 0, Ystar[b])[0] for b in range(B)],
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.logp, [sequence_loglik(model, w, X[b], 0, Y[b])[0] for b in range(B)],
                               rtol=1e-12, atol=1e-12)
    if mode == "supervised":
        ref = sum(score_grad(model, w, X[b], 0, Ystar[b], np.ones(N)) for b in range(B)) / (B * N)
    else:
        ref = pg_batch_step(model, w.copy(), np.zeros(model.D), X, J, Ystar, Y, mode, reward, baseline, G, std,
                            0.1)
    np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-14)
    assert np.abs(g).max() > 0


@pytest.mark.parametrize("kind", ["fused", "separate"])      # grpo: tests/test_kernels_grpo.py
def test_same_bits_for_any_thread_count_and_the_serial_twin(num_threads, kind):
    B, N = 100, 7
    model, fm, w, X, Ystar = _problem(4, N, 5, B, seed=3)
    parallel, serial = K.STEPS[kind]
    for mode, baseline, G in (("outcome", "batch_mean", 1), ("outcome", "group_mean", 4), ("process", "none", 1)):
        params = K.step_params(mode, "pm1", baseline, G, False, 1.0 / (B * N))
        results = []
        for n in (1, 2):
            with num_threads(n):
                results.append(_run(fm, w, X, Ystar, params, parallel))
        results.append(_run(fm, w, X, Ystar, params, serial))
        for out, g in results[1:]:
            np.testing.assert_array_equal(out.Y, results[0][0].Y)
            np.testing.assert_array_equal(out.llstar, results[0][0].llstar)
            np.testing.assert_array_equal(g, results[0][1])


def test_rows_do_not_depend_on_the_batch_they_are_in():
    """Row b's draw and scores depend on its stream and context only (a batch split in two gives the same rows)."""
    B, N = 64, 5
    model, fm, w, X, Ystar = _problem(3, N, 4, B, seed=4)
    params = K.step_params("process", "pm1", "none", 1, False, 1.0)
    whole, _ = _run(fm, w, X, Ystar, params)
    out = K.step_out(24, N)
    K.pg_step(fm, w, w, X[40:], np.zeros(24, np.int64), Ystar[40:], params, SEED, FIRST + 40, 0, out,
              np.zeros(w.shape[0]))
    np.testing.assert_array_equal(out.Y, whole.Y[40:])
    np.testing.assert_array_equal(out.llstar, whole.llstar[40:])


def test_extreme_logits_fall_back_to_the_exact_row():
    """±1e4 logits: the factorised sums underflow and the exact row takes over; scores stay finite and exact."""
    B, N = 8, 4
    model, fm, w, X, Ystar = _problem(3, N, 2, B, seed=5, wscale=4000.0)
    params = K.step_params("supervised", "pm1", "none", 1, False, 1.0)
    out, g = _run(fm, w, X, Ystar, params)
    ref = [sequence_loglik(model, w, X[b], 0, Ystar[b])[0] for b in range(B)]
    assert np.all(np.isfinite(out.llstar)) and np.all(np.isfinite(g))
    np.testing.assert_allclose(out.llstar, ref, atol=1e-9)
    np.testing.assert_array_equal(out.Y, sample_policy_batch(model, w, X, np.zeros(B, np.int64), SEED, FIRST))


@pytest.mark.parametrize("baseline", ["none", "batch_mean", "loo"])
@pytest.mark.parametrize("std", [False, True])
@pytest.mark.parametrize("neg", [-1.0, 0.0])
def test_binary_advantages_match_group_advantages(baseline, std, neg):
    code = K.BASELINES[baseline]
    for n1, n0 in ((0, 5), (3, 0), (1, 1), (2, 7), (13, 4)):
        r = np.array([[1.0]] * n1 + [[neg]] * n0)
        adv = np.empty_like(r)
        K.group_advantages(r, n1 + n0, code, std, adv)
        a1, a0 = K.binary_advantages(n1, n0, neg, code, std)
        np.testing.assert_allclose(adv[:, 0], [a1] * n1 + [a0] * n0, rtol=1e-12, atol=1e-15)


def test_step_params_refuse_bad_names():
    with pytest.raises(ValueError, match="mode must be one of"):
        K.step_params("orm")
    with pytest.raises(ValueError, match="baseline must be 'none' for the fused process-reward step"):
        K.step_params("process", baseline="batch_mean")
    with pytest.raises(ValueError, match="reward must be"):
        K.step_params("outcome", reward="+-1")
    with pytest.raises(ValueError, match="kernel must be one of 'fused', 'separate', 'grpo'"):
        K.step_params("outcome", kernel="pg_step")
    assert K.step_params("process", baseline="batch_mean", kernel="separate").baseline == K.GROUP_MEAN
    assert K.step_kind(K.FeatureMap(K.BIGRAM, 2, 2, 1.0), "process", "group_mean") == "separate"
    assert K.step_kind(K.FeatureMap(K.BIGRAM, 2, 2, 1.0), "process", "none") == "fused"
    assert K.step_kind(K.FeatureMap(K.BIGRAM, 2, 2, 1.0), "outcome", "none", "grpo") == "grpo"
    assert K.step_params("outcome", baseline="rloo").baseline == K.LEAVE_ONE_OUT      # RLOO: the loo baseline
    assert K.fused_supported(K.FeatureMap(K.BIGRAM, 2, 2, 1.0), "outcome", "loo")
    assert not K.fused_supported(K.FeatureMap(K.CELLS, 2, 2, 1.0), "outcome", "none")
    assert not K.fused_supported(K.FeatureMap(K.BIGRAM, 2, 2, 1.0), "process", "group_mean")


def _mode_share(model, w, X, Y):
    """(share of the sampled tokens drawn from a row whose most likely token holds ≥ half its mass, share of
    those tokens equal to that mode): the rows ``pg_step`` draws by the mode's interval first."""
    peaked = hits = n = 0
    for b in range(len(X)):
        prev = 0
        for i in range(Y.shape[1]):
            logits = model.phi_matrix(X[b], 0, i, prev) @ w
            p = np.exp(logits - logits.max())
            p /= p.sum()
            n += 1
            if p.max() >= 0.5:
                peaked += 1
                hits += Y[b, i] == np.argmax(p)
            prev = Y[b, i]
    return peaked / n, hits / max(peaked, 1)


@pytest.mark.parametrize("wscale", [0.3, 2.5], ids=["mostly-flat-rows", "mostly-peaked-rows"])
@pytest.mark.parametrize("mode", ["outcome", "process", "supervised"])
def test_long_responses_reuse_rows_and_match_sample_batch_bit_for_bit(mode, wscale):
    """N ≫ k: each sequence's row cache serves most tokens from rows computed earlier in the sequence. The
    responses and their log-probabilities equal ``sample_batch``'s bit for bit — with flat rows (every token by
    the count of partial sums) and with peaked ones (most tokens by the mode's interval, the others by the
    count) — and the gradient (summed by row, not by token) still matches the reference."""
    B, N, k = 70, 40, 4
    model, fm, w, X, Ystar = _problem(k, N, 3, B, seed=8, wscale=wscale)
    params = K.step_params(mode, "pm1", "none", 1, False, 1.0 / (B * N))
    out, g = _run(fm, w, X, Ystar, params)
    states = np.empty((B, 4), np.uint64)
    K.seed_streams(SEED, FIRST, states)
    Y, lse = np.empty((B, N), np.int64), np.empty((B, N))
    logp, logq = np.empty(B), np.empty(B)
    J = np.zeros(B, np.int64)
    K.sample_batch(fm, w, w, X, J, K.POLICY, 0.0, states, Y, lse, logp, logq)
    np.testing.assert_array_equal(out.Y, Y)
    np.testing.assert_array_equal(out.logp, logp)
    if mode == "supervised":
        ref = sum(score_grad(model, w, X[b], 0, Ystar[b], np.ones(N)) for b in range(B)) / (B * N)
    else:
        ref = pg_batch_step(model, w.copy(), np.zeros(model.D), X, J, Ystar, Y, mode, "pm1", "none", 1, False, 0.1)
    np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-14)
    assert 0 < out.prefix.mean() < N
    peaked, hits = _mode_share(model, w, X, Y)
    if wscale > 1:              # both ways of drawing a token occur, on many tokens each
        assert peaked > 0.5 and 0.5 < hits < 0.99, (peaked, hits)
    else:
        assert 0 < peaked < 0.5, peaked


@pytest.mark.parametrize("mode,reward,baseline,G,std", [("outcome", "pm1", "batch_mean", 1, False),
                                                       ("outcome", "01", "loo", 3, True),
                                                       ("process", "pm1", "group_mean", 3, False),
                                                       ("supervised", "pm1", "none", 1, False),
                                                       ("fit", "pm1", "none", 1, False)])
def test_separate_step_on_the_cells_map_matches_the_numpy_reference(mode, reward, baseline, G, std):
    """The maps the fused step does not take: on cells (the context is its id J), the sample, the scores and the
    gradient are the reference's."""
    k, N, M, B = 3, 4, 5, 36
    rng = np.random.default_rng(21)
    model = Model("cells", k, N, 1.0, M=M)
    w = rng.normal(size=model.D)
    fm = K.FeatureMap(K.CELLS, k, N, 1.0)
    J = rng.integers(0, M, size=B).astype(np.int64)
    X = np.zeros((B, 0))
    Ystar = np.array([[int(np.argmax(model.phi_matrix(X[b], int(J[b]), i, 0) @ w)) for i in range(N)]
                      for b in range(B)], np.int64)
    params = K.step_params(mode, reward, baseline, G, std, 1.0 / (B * N), kernel="separate")
    out, g = _run(fm, w, X, Ystar, params, K.separate_step, J)
    np.testing.assert_allclose(out.llstar, [sequence_loglik(model, w, X[b], int(J[b]), Ystar[b])[0]
                                            for b in range(B)], rtol=1e-12, atol=1e-12)
    if mode in ("supervised", "fit"):
        ref = sum(score_grad(model, w, X[b], int(J[b]), Ystar[b], np.ones(N)) for b in range(B)) / (B * N)
    else:
        Y = sample_policy_batch(model, w, X, J, SEED, FIRST)
        np.testing.assert_array_equal(out.Y, Y)
        np.testing.assert_array_equal(out.prefix, np.cumprod(Y == Ystar, axis=1).sum(axis=1))
        ref = pg_batch_step(model, w.copy(), np.zeros(model.D), X, J, Ystar, Y, mode, reward, baseline, G, std, 0.1)
    np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-14)
    assert np.abs(g).max() > 0


def test_separate_step_equals_the_three_batch_kernels_bit_for_bit():
    """``separate_step`` is ``loglik_batch``, ``sample_batch`` and ``grad_batch`` called in turn (the path the learner
    took before the step was one kernel): same bits."""
    B, N = 70, 5
    model, fm, w, X, Ystar = _problem(3, N, 4, B, seed=9)
    J = np.zeros(B, np.int64)
    params = K.step_params("process", "pm1", "group_mean", 5, True, 1.0 / (B * N), kernel="separate")
    out, g = _run(fm, w, X, Ystar, params, K.separate_step)
    ll, mn, tok = np.empty(B), np.empty(B), np.empty((B, N))
    K.loglik_batch(fm, w, X, J, Ystar, ll, mn, tok)
    states = np.empty((B, 4), np.uint64)
    K.seed_streams(SEED, FIRST, states)
    Y, lse, logp, logq = np.empty((B, N), np.int64), np.empty((B, N)), np.empty(B), np.empty(B)
    K.sample_batch(fm, w, w, X, J, K.POLICY, 0.0, states, Y, lse, logp, logq)
    r = np.where(np.cumprod(Y == Ystar, axis=1).astype(bool), 1.0, -1.0)
    adv = np.empty_like(r)
    K.group_advantages(r, 5, K.GROUP_MEAN, True, adv)
    ref = np.zeros(model.D)
    K.grad_batch(fm, w, X, J, Y, adv, lse, True, 1.0 / (B * N), ref)
    for a, b in ((out.llstar, ll), (out.Y, Y), (out.logp, logp), (g, ref)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", list(range(0, 20)) + [63, 64, 127, 128, 129, 200, 255, 256, 257, 1000, 4097])
def test_pairwise_sum_is_numpys_sum_bit_for_bit(n):
    a = np.random.default_rng(n).normal(size=n) * 10.0 ** np.random.default_rng(n + 1).uniform(-6, 6, size=n)
    assert K.pairwise_sum(a) == np.sum(a)
