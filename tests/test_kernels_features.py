"""kernels.features (fused logits / gradient primitives) and kernels.sequence.sequence_loglik against a
reference that builds φ(x, y_<i, a) explicitly as a dense D-vector."""
import math

import numpy as np
import pytest
from numba import njit

import onlinepg.kernels as K
from conftest import JIT_DISABLED
from onlinepg.features import FeatureSpec
from reference import Model, position_logits, sequence_loglik


def _response(case, seed=0):
    return np.random.default_rng(seed).integers(case.k, size=case.N).astype(np.int64)


def test_feature_dim():
    """``FeatureSpec.D``, the length of w the engine and ``Policy`` allocate, is the layout the kernels index."""
    bigram, cells = FeatureSpec("bigram", 7, 5, d=3), FeatureSpec("cells", 7, 5, M=4)
    assert bigram.D == 3 * 7 + 49 == Model("bigram", 7, 5, 1.0, d=3, M=0).D
    assert cells.D == 4 * 5 * 7 == Model("cells", 7, 5, 1.0, d=0, M=4).D
    if not JIT_DISABLED:        # a custom φ must be an @njit dispatcher, which NUMBA_DISABLE_JIT=1 turns off
        custom = FeatureSpec("custom", 7, 5, d=3, D_custom=11, phi=njit(lambda x, y, i, a, out: None))
        assert custom.D == 11                   # a custom map gives its dimension itself


def test_token_logits_match_dense_phi(case, scratch):
    y = _response(case, 1)
    want = position_logits(case.model, case.w, case.x, case.j, y)
    u, out = scratch(case.k, 2)
    K.prepare(case.fm, case.w, case.x, case.j, u)
    for i in range(case.N):
        out[:] = np.nan
        # entries of y at and after position i must not be read: scribble over them
        yp = y.copy()
        yp[i:] = case.k - 1 - yp[i:]
        K.token_logits(case.fm, case.w, case.x, case.j, u, yp, i, out)
        np.testing.assert_allclose(out, want[i], rtol=1e-13, atol=1e-13, err_msg=f"position {i}")


def test_token_grad_and_finish_grad_match_dense_phi(case, scratch):
    """g after token_grad over all positions + finish_grad equals Σ_i Σ_a coef_i[a] φ(x, y_<i, a)."""
    rng = np.random.default_rng(7)
    y = _response(case, 2)
    coefs = rng.normal(size=(case.N, case.k))
    g0 = rng.normal(size=case.model.D)
    g = g0.copy()
    (cu,) = scratch(case.k, 1)
    cu[:] = 0.0
    want = g0.copy()
    prev = 0
    for i in range(case.N):
        c = np.ascontiguousarray(coefs[i])
        K.token_grad(case.fm, case.x, case.j, y, i, c, cu, g)
        want += c @ case.model.phi_matrix(case.x, case.j, i, prev)
        prev = int(y[i])
    K.finish_grad(case.fm, case.x, case.j, cu, g)
    np.testing.assert_allclose(g, want, rtol=1e-13, atol=1e-13)


def test_sequence_loglik_matches_reference(case, scratch):
    for seed in range(3):
        y = _response(case, 10 + seed)
        total, worst, tok_ref, _ = sequence_loglik(case.model, case.w, case.x, case.j, y)
        tok = np.full(case.N, np.nan)
        got_total, got_worst = K.sequence_loglik(case.fm, case.w, case.x, case.j, y, tok, K.sequence_workspace(case.k))
        np.testing.assert_allclose(tok, tok_ref, rtol=1e-13, atol=1e-13)
        assert got_total == pytest.approx(total, rel=1e-13, abs=1e-13)
        assert got_worst == pytest.approx(worst, rel=1e-13, abs=1e-13)
        assert got_worst == np.min(tok)


def test_zero_weights_give_uniform_likelihood(case, scratch):
    y = _response(case, 3)
    tok = np.empty(case.N)
    total, worst = K.sequence_loglik(case.fm, np.zeros(case.model.D), case.x, case.j, y, tok,
                                     K.sequence_workspace(case.k))
    assert total == pytest.approx(-case.N * math.log(case.k), rel=1e-14)
    assert worst == pytest.approx(-math.log(case.k), rel=1e-14)


@pytest.mark.parametrize("kind", ["bigram", "cells"])
def test_sequence_loglik_long_sequence_underflowing_in_linear_space(make_case, scratch, kind):
    k, N = 50, 400
    case = make_case(kind, k, N, tscale=1.0 / math.sqrt(2.0), d=3, M=1, seed=4, wscale=2.0)
    y = _response(case, 5)
    total, worst, tok_ref, _ = sequence_loglik(case.model, case.w, case.x, case.j, y)
    assert np.prod(np.exp(tok_ref)) == 0.0  # the likelihood itself is not representable
    assert total < -800.0
    tok = np.empty(N)
    got_total, got_worst = K.sequence_loglik(case.fm, case.w, case.x, case.j, y, tok, K.sequence_workspace(k))
    assert np.isfinite(got_total)
    np.testing.assert_allclose(tok, tok_ref, rtol=1e-12, atol=1e-12)
    assert got_total == pytest.approx(total, rel=1e-12)
    assert got_worst == pytest.approx(worst, rel=1e-12)
