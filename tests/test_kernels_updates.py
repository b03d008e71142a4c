"""kernels.updates: learning-rate rules, the ascent step and the clipped importance weight."""
import math

import numpy as np
import pytest

import onlinepg.kernels as K
from reference import adagrad_update, adaptive_update, clipped_importance_weight, constant_update


def _wg(seed, D=11):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=D)
    g[[2, 5]] = 0.0
    return rng.normal(size=D), g


def test_sq_norm_and_adaptive_lr():
    _, g = _wg(1)
    assert K.sq_norm(g) == pytest.approx(float(np.sum(g * g)), rel=1e-15)
    assert K.sq_norm(np.zeros(4)) == 0.0
    assert K.adaptive_lr(0.0) == 0.25
    assert K.adaptive_lr(3.0) == pytest.approx(1.0 / 10.0, rel=1e-15)


@pytest.mark.parametrize("scale", [0.0, 1e-3, 1.0, 30.0])
def test_apply_update_adaptive(scale):
    w, g = _wg(2)
    g = g * scale
    want_w, want_eta, want_gsq = adaptive_update(w, g)
    G2 = np.full(w.shape[0], 0.5)
    eta, gsq = K.apply_update(K.ADAPTIVE, w, g, 0.123, G2)
    assert eta == pytest.approx(want_eta, rel=1e-14)
    assert eta == pytest.approx(1.0 / (4.0 + 2.0 * gsq), rel=1e-15)
    assert gsq == pytest.approx(want_gsq, rel=1e-14)
    np.testing.assert_allclose(w, want_w, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(G2, 0.5)  # the Adagrad accumulator is not touched


def test_apply_update_constant():
    w, g = _wg(3)
    want_w, want_eta, want_gsq = constant_update(w, g, 0.05)
    G2 = np.zeros(w.shape[0])
    eta, gsq = K.apply_update(K.CONSTANT, w, g, 0.05, G2)
    assert eta == 0.05
    assert gsq == pytest.approx(want_gsq, rel=1e-14)
    np.testing.assert_allclose(w, want_w, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(G2, 0.0)


def test_apply_update_adagrad_several_steps():
    rng = np.random.default_rng(4)
    D = 11
    w = rng.normal(size=D)
    G2 = np.zeros(D)
    want_w, want_G2 = w.copy(), G2.copy()
    for step in range(6):
        g = rng.normal(size=D) * (10.0 ** (step - 3))
        g[step % D] = 0.0  # a coordinate with no gradient yet: G2 = 0 there must not blow up
        if step == 0:
            g[0] = 0.0
        want_w, want_G2 = adagrad_update(want_w, g, 0.1, want_G2)
        eta, gsq = K.apply_update(K.ADAGRAD, w, g, 0.1, G2)
        assert eta == 0.1
        assert gsq == pytest.approx(float(np.sum(g * g)), rel=1e-14)
        np.testing.assert_allclose(G2, want_G2, rtol=1e-14, atol=0.0)
        np.testing.assert_allclose(w, want_w, rtol=1e-13, atol=1e-15)
        assert np.isfinite(w).all()


@pytest.mark.parametrize("zeta", [1.0, 1.5, 10.0, 1e6])
def test_clipped_importance_weight(zeta):
    logs = [0.0, -0.3, 0.3, -5.0, 2.0, -800.0, -1e5, 1e5]
    for lp in logs:
        for lq in logs:
            got = K.clipped_importance_weight(lp, lq, zeta)
            want = clipped_importance_weight(lp, lq, zeta)
            assert math.isfinite(got)
            assert 1.0 / zeta * (1 - 1e-15) <= got <= zeta * (1 + 1e-15)
            assert got == pytest.approx(want, rel=1e-14), (lp, lq, zeta)


def test_clipped_importance_weight_huge_log_ratios():
    # the likelihoods themselves underflow (e^-1e5); the ratio is computed in log space
    assert K.clipped_importance_weight(-1e5, -1e5 - 1.0, 10.0) == pytest.approx(math.e, rel=1e-14)
    assert K.clipped_importance_weight(0.0, -1e300, 10.0) == pytest.approx(10.0, rel=1e-15)
    assert K.clipped_importance_weight(-1e300, 0.0, 10.0) == pytest.approx(0.1, rel=1e-15)
    assert K.clipped_importance_weight(-900.0, -1200.0, 4.0) == pytest.approx(4.0, rel=1e-15)
