"""The validating Python layer: Policy over every feature map, custom φ, and bad input."""
import math
import re

import numpy as np
import pytest
from numba import njit

import onlinepg as op

D3, K4, N3 = 3, 4, 3


@njit
def bigram_phi(x, y, i, a, out):
    """The bigram map written as a dense custom φ (k = 4 baked in)."""
    out[:] = 0.0
    for c in range(x.shape[0]):
        out[c * 4 + a] = x[c]
    if i > 0:
        out[x.shape[0] * 4 + y[i - 1] * 4 + a] = 1.0


def _pair():
    big = op.FeatureSpec("bigram", K4, N3, d=D3)
    cus = op.FeatureSpec("custom", K4, N3, d=D3, D_custom=big.D, phi=bigram_phi)
    return big, cus


def test_custom_map_reproduces_bigram():
    big, cus = _pair()
    rs = np.random.default_rng(0)
    w = rs.normal(size=big.D)
    X = rs.normal(size=(40, D3))
    pb, pc = op.Policy(big, w), op.Policy(cus, w)
    sb = pb.sample(X, None, "policy", seed=3)
    sc = pc.sample(X, None, "policy", seed=3)
    np.testing.assert_array_equal(sb.Y, sc.Y)
    np.testing.assert_allclose(sb.logp, sc.logp, rtol=1e-12)
    for a, b in zip(pb.loglik(X, None, sb.Y), pc.loglik(X, None, sb.Y)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    adv = rs.normal(size=(40, N3))
    np.testing.assert_allclose(pb.grad(X, None, sb.Y, adv), pc.grad(X, None, sb.Y, adv), atol=1e-12)
    Ys = rs.integers(0, K4, size=(40, N3))
    np.testing.assert_allclose(pb.margin_gaps(X, None, Ys), pc.margin_gaps(X, None, Ys), atol=1e-12)


def test_uniform_policy_likelihood():
    spec = op.FeatureSpec("cells", 5, 4, M=3)
    ll, mn, tok = op.Policy(spec).loglik(None, [0, 1, 2], np.zeros((3, 4), np.int64))
    np.testing.assert_allclose(ll, -4 * math.log(5))
    np.testing.assert_allclose(mn, -math.log(5))


def test_extreme_logits_stay_finite():
    spec = op.FeatureSpec("bigram", 3, 4, d=2)
    rs = np.random.default_rng(1)
    w = np.sign(rs.normal(size=spec.D)) * 1e4
    pol = op.Policy(spec, w)
    X = np.sign(rs.normal(size=(50, 2)))
    smp = pol.sample(X, None, "policy", seed=0)
    ll, mn, tok = pol.loglik(X, None, smp.Y)
    assert np.all(np.isfinite(smp.logp)) and np.all(np.isfinite(ll)) and np.all(np.isfinite(smp.lse))
    worst = pol.loglik(X, None, (smp.Y + 1) % 3)[0]
    assert np.all(np.isfinite(worst)) and np.all(worst <= 0) and worst.min() < -1e3
    g = pol.grad(X, None, smp.Y, np.ones(50))
    assert np.all(np.isfinite(g))


def test_update_rules():
    spec = op.FeatureSpec("cells", 2, 1, M=2)
    g = np.array([3.0, 0.0, -1.0, 0.0])
    pol = op.Policy(spec)
    eta, gsq = pol.update(g, "adaptive")
    assert gsq == 10.0 and eta == 1 / 24
    np.testing.assert_allclose(pol.w, g / 24)
    G2 = np.zeros(4)
    pol = op.Policy(spec)
    pol.update(g, "adagrad", 0.5, G2)
    np.testing.assert_allclose(pol.w, 0.5 * g / (np.abs(g) + 1e-10))


def test_sample_behaviours_need_base():
    spec = op.FeatureSpec("cells", 3, 2, M=2)
    with pytest.raises(op.ConfigError, match="base"):
        op.Policy(spec).sample(None, [0, 1], "mixture")


BAD = [
    (lambda p: p.sample(np.ones((2, 4)), None), "X must have shape (any, 3)"),
    (lambda p: p.sample(np.array([[1.0, np.nan, 0.0]]), None), "X must contain only finite"),
    (lambda p: p.sample(np.ones((2, 3)), None, "greedy"), "behaviour must be one of"),
    (lambda p: p.sample(np.ones((2, 3)), None, "eps_mixture", eps=1.5), "eps must be in"),
    (lambda p: p.sample(np.ones((2, 3)), None, seed=-1), "seed must be an integer"),
    (lambda p: p.loglik(np.ones((2, 3)), None, np.full((2, 3), 4)), "Y entries must be in [0, 3]"),
    (lambda p: p.loglik(np.ones((2, 3)), None, np.zeros((2, 2), int)), "Y must have shape (2, 3)"),
    (lambda p: p.loglik(np.ones((2, 3)), None, np.zeros((2, 3))), "Y must be an integer array"),
    (lambda p: p.grad(np.ones((2, 3)), None, np.zeros((2, 3), int), np.array([1.0, np.inf])), "adv must"),
    (lambda p: p.update(np.zeros(28), "sgd"), "rule must be one of"),
    (lambda p: p.update(np.zeros(28), "constant", lr=0.0), "lr must be in"),
    (lambda p: p.update(np.zeros(28), "adagrad"), "adagrad_state must be"),
    (lambda p: p.update(np.zeros(27)), "g must have shape (28,)"),
    (lambda p: op.Policy(p.features, np.full(28, np.inf)), "w must contain only finite"),
    (lambda p: op.Policy(p.features, np.zeros(5)), "w must have shape (28,)"),
]


@pytest.mark.parametrize("call,message", BAD)
def test_bad_policy_input(call, message):
    pol = op.Policy(op.FeatureSpec("bigram", K4, N3, d=D3))
    with pytest.raises(op.ConfigError, match=re.escape(message)):
        call(pol)


@pytest.mark.parametrize("kwargs,message", [
    (dict(kind="trigram", k=3, N=2, d=2), "features.kind must be one of"),
    (dict(kind="bigram", k=1, N=2, d=2), "features.k must be an integer >= 2"),
    (dict(kind="bigram", k=3, N=0, d=2), "features.N must be an integer >= 1"),
    (dict(kind="bigram", k=3, N=2, d=0), "features.d must be an integer >= 1"),
    (dict(kind="cells", k=3, N=2), "features.M must be an integer >= 1"),
    (dict(kind="custom", k=3, N=2, d=2, D_custom=4, phi=lambda *a: None), "features.phi must be"),
    (dict(kind="bigram", k=3.5, N=2, d=2), "features.k must be an integer"),
])
def test_bad_feature_spec(kwargs, message):
    with pytest.raises(op.ConfigError, match=re.escape(message)):
        op.FeatureSpec(**kwargs)


def test_cells_context_ids_checked():
    pol = op.Policy(op.FeatureSpec("cells", 3, 2, M=4))
    with pytest.raises(op.ConfigError, match=re.escape("J entries must be in [0, 3]")):
        pol.sample(None, [0, 4])
    with pytest.raises(op.ConfigError, match="J .* is required"):
        pol.sample(np.zeros((2, 0)), None)


def test_scorer_checks_the_batch_once_and_scores_like_loglik():
    """``Policy.scorer``: the batch a run scores again and again is checked when the scorer is made (the same
    errors as ``loglik``'s), and each call gives ``loglik``'s log-likelihoods bit for bit, in a new array."""
    big, _ = _pair()
    rs = np.random.default_rng(4)
    pol = op.Policy(big, rs.normal(size=big.D))
    X, Y = rs.normal(size=(30, D3)), rs.integers(0, K4, size=(30, N3))
    score = pol.scorer(X, None, Y)
    first = score(pol.w)
    np.testing.assert_array_equal(first, pol.loglik(X, None, Y)[0])
    pol.w += 0.5                                   # the scorer reads the weights it is given at each call
    second = score(pol.w)
    np.testing.assert_array_equal(second, pol.loglik(X, None, Y)[0])
    assert second is not first and not np.array_equal(first, second)
    with pytest.raises(op.ConfigError, match=r"Y entries must be in \[0, 3\]"):
        pol.scorer(X, None, Y + 4)
    with pytest.raises(op.ConfigError, match="X must contain only finite values"):
        pol.scorer(np.full((30, D3), np.nan), None, Y)
