"""kernels.sequence.accumulate_grad and kernels.batch.grad_batch: the score-function gradient
g += scale · Σ_i A_i (φ(y_i) − Σ_a p_a φ(a)), against dense φ and central finite differences."""
import numpy as np
import pytest

import onlinepg.kernels as K
from reference import finite_difference_grad, score_grad, weighted_loglik


def _advantages(N, rng):
    """Per-token advantages with zeros in them (every other token for N > 1)."""
    adv = rng.normal(size=N)
    adv[1::2] = 0.0
    return adv


def _sample(case, behaviour, seed, scratch, seeded_state):
    y = np.empty(case.N, dtype=np.int64)
    lse = np.full(case.N, np.nan)
    state = seeded_state(seed, 0)
    K.sample_sequence(case.fm, case.w, case.w0, case.x, case.j, behaviour, 0.0, state, y, lse,
                      K.sequence_workspace(case.k))
    return y, lse


@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_accumulate_grad_matches_dense_reference(case, scratch, seeded_state, scale):
    rng = np.random.default_rng(21)
    for behaviour in (K.POLICY, K.UNIFORM):
        y, lse = _sample(case, behaviour, 5 + behaviour, scratch, seeded_state)
        adv = _advantages(case.N, rng)
        want_inc = scale * score_grad(case.model, case.w, case.x, case.j, y, adv)
        for have_lse in (False, True):
            g0 = rng.normal(size=case.model.D)
            g = g0.copy()
            lse_arg = lse if have_lse else np.full(case.N, np.nan)  # unread without have_lse
            K.accumulate_grad(case.fm, case.w, case.x, case.j, y, adv, lse_arg, have_lse, scale, g,
                              K.sequence_workspace(case.k))
            np.testing.assert_allclose(g - g0, want_inc, rtol=1e-10, atol=1e-12,
                                       err_msg=f"behaviour={behaviour} have_lse={have_lse}")


def test_accumulate_grad_matches_finite_differences(case, scratch, seeded_state):
    rng = np.random.default_rng(22)
    y, lse = _sample(case, K.POLICY, 9, scratch, seeded_state)
    adv = _advantages(case.N, rng)
    fd = finite_difference_grad(lambda v: weighted_loglik(case.model, v, case.x, case.j, y, adv), case.w)
    ref = score_grad(case.model, case.w, case.x, case.j, y, adv)
    np.testing.assert_allclose(ref, fd, rtol=1e-6, atol=1e-8)  # the reference itself is the gradient
    for have_lse in (False, True):
        g = np.zeros(case.model.D)
        K.accumulate_grad(case.fm, case.w, case.x, case.j, y, adv, lse, have_lse, 1.0, g,
                          K.sequence_workspace(case.k))
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8, err_msg=f"have_lse={have_lse}")


def test_accumulate_grad_zero_advantages_leave_g_untouched(case, scratch):
    y = np.zeros(case.N, dtype=np.int64)
    g0 = np.random.default_rng(23).normal(size=case.model.D)
    g = g0.copy()
    K.accumulate_grad(case.fm, case.w, case.x, case.j, y, np.zeros(case.N), np.full(case.N, np.nan), False,
                      1.0, g, K.sequence_workspace(case.k))
    np.testing.assert_array_equal(g, g0)


def test_accumulate_grad_supervised_at_zero_weights(make_case, scratch):
    """At w = 0 with A = 1: g = Σ_i (φ(y_i) − mean_a φ(a)); for cells that is e_y − 1/k in each cell."""
    case = make_case("cells", 3, 2, M=2, seed=1)
    y = np.array([2, 0], dtype=np.int64)
    g = np.zeros(case.model.D)
    K.accumulate_grad(case.fm, np.zeros(case.model.D), case.x, case.j, y, np.ones(2), np.zeros(2), False, 1.0,
                      g, K.sequence_workspace(3))
    want = np.zeros((2, 2, 3))
    want[case.j] = -1.0 / 3.0
    want[case.j, 0, 2] += 1.0
    want[case.j, 1, 0] += 1.0
    np.testing.assert_allclose(g, want.reshape(-1), rtol=1e-15, atol=1e-15)


def _batch(case, B, seed):
    rng = np.random.default_rng(seed)
    d = case.model.d
    X = np.ascontiguousarray(rng.normal(size=(B, d)))
    J = rng.integers(max(case.model.M, 1), size=B).astype(np.int64)
    states = np.zeros((B, 4), dtype=np.uint64)
    K.seed_streams(seed, 0, states)
    Y = np.zeros((B, case.N), dtype=np.int64)
    lse = np.zeros((B, case.N))
    logp = np.zeros(B)
    logq = np.zeros(B)
    K.sample_batch(case.fm, case.w, case.w0, X, J, K.EPS_MIXTURE, 0.3, states, Y, lse, logp, logq)
    adv = rng.normal(size=(B, case.N))
    adv[rng.random(size=(B, case.N)) < 0.3] = 0.0
    adv[::7] = 0.0  # whole sequences that contribute nothing
    return X, J, Y, lse, adv


@pytest.mark.parametrize("kind", ["bigram", "cells"])
def test_grad_batch_matches_sum_of_references(make_case, kind):
    case = make_case(kind, 3, 5, tscale=0.5 ** 0.5, M=4, seed=31)
    B = 70  # three blocks, the last one partial
    X, J, Y, lse, adv = _batch(case, B, 32)
    want = np.zeros(case.model.D)
    for b in range(B):
        want += score_grad(case.model, case.w, X[b], J[b], Y[b], adv[b])
    for have_lse in (False, True):
        g0 = np.random.default_rng(33).normal(size=case.model.D)
        g = g0.copy()
        K.grad_batch(case.fm, case.w, X, J, Y, adv, lse, have_lse, 0.25, g)
        np.testing.assert_allclose(g - g0, 0.25 * want, rtol=1e-10, atol=1e-12, err_msg=f"have_lse={have_lse}")


@pytest.mark.parametrize("kind", ["bigram", "cells"])
def test_grad_batch_bit_identical_across_thread_counts(make_case, num_threads, kind):
    case = make_case(kind, 7, 5, M=3, seed=41)
    X, J, Y, lse, adv = _batch(case, 200, 42)
    out = {}
    for n in (1, 2):
        with num_threads(n):
            g = np.zeros(case.model.D)
            K.grad_batch(case.fm, case.w, X, J, Y, adv, lse, True, 1.0, g)
            out[n] = g
    assert np.array_equal(out[1], out[2])
