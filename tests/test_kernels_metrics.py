"""The exact RLVR metrics kernels (kernels/metrics.py) against plain NumPy/Python references, in the regimes
where a naive formula breaks: p down to 1e-300, k up to 2^52, p = 1 and p = 0."""
import math
from fractions import Fraction

import numpy as np
import pytest

import onlinepg.kernels as K


def _pass_reference(p, k):
    """1 − (1 − p)^k: exactly in rationals where that is cheap, else the series k·p − C(k,2)p² + … (tiny p)."""
    if k * p < 1e-6:
        return k * p - k * (k - 1) / 2 * p * p
    if k <= 64:
        return float(1 - (1 - Fraction(p)) ** k)
    return -math.expm1(k * math.log1p(-p)) if p < 0.5 else 1.0 - math.exp(k * math.log(1.0 - p))


@pytest.mark.parametrize("x", [-1e-300, -1e-12, -0.1, -0.69, -0.7, -1.0, -40.0, -700.0])
def test_log1mexp(x):
    assert K.log1mexp(x) == pytest.approx(math.log(-math.expm1(x)), rel=1e-13)
    assert K.log1mexp(0.0) == -math.inf


def test_pass_at_k_against_a_reference():
    ps = np.array([1e-300, 1e-200, 1e-20, 1e-9, 0.001, 0.3, 0.5, 0.9, 1 - 1e-9])
    ks = np.array([1.0, 2.0, 7.0, 64.0, 1024.0, 2.0 ** 20, 2.0 ** 52])
    for p in ps:
        out = np.empty(len(ks))
        K.pass_at_k(np.array([math.log(p)]), ks, out)
        for k, got in zip(ks, out):
            ref = _pass_reference(float(p), int(k))
            assert got == pytest.approx(ref, rel=1e-9, abs=1e-300), (p, k)
    # the mean over contexts, and the end points p = 1 (ll = 0) and p = 0 (ll = −inf)
    ll = np.array([0.0, -math.inf, math.log(0.25)])
    out = np.empty(2)
    K.pass_at_k(ll, np.array([1.0, 2.0]), out)
    np.testing.assert_allclose(out, [(1 + 0 + 0.25) / 3, (1 + 0 + (1 - 0.75 ** 2)) / 3], rtol=1e-15)


def test_pass_at_k_is_increasing_in_k_and_exact_at_k_1():
    rng = np.random.default_rng(0)
    ll = -rng.exponential(30.0, size=500)
    ks = 2.0 ** np.arange(21)
    out = np.empty(len(ks))
    K.pass_at_k(ll, ks, out)
    assert np.all(np.diff(out) >= 0) and out[0] == pytest.approx(np.exp(ll).mean(), rel=1e-12)


def test_support_fractions():
    le = math.log(0.01)
    base = np.log([0.5, 0.5, 1e-5, 1e-5, 0.02])
    pol = np.log([0.9, 1e-4, 0.5, 1e-9, 0.01])
    kept, lost, gained = K.support_fractions(base, pol, le)
    assert (kept, lost, gained) == (2 / 5, 1 / 5, 1 / 5)      # contexts 0 and 4 kept, 1 lost, 2 gained


@pytest.mark.parametrize("kind", ["bigram", "cells"])
@pytest.mark.parametrize("B", [3, 70])          # serial and parallel (several blocks)
def test_entropy_batch_against_numpy(kind, B):
    from reference import Model, token_probs
    rng = np.random.default_rng(4)
    k, N, d, M = 5, 4, 3, 6
    if kind == "bigram":
        model, fm = Model("bigram", k, N, 0.7, d=d), K.FeatureMap(K.BIGRAM, k, N, 0.7)
        X, J = rng.normal(size=(B, d)), np.zeros(B, np.int64)
    else:
        model, fm = Model("cells", k, N, 1.0, M=M), K.FeatureMap(K.CELLS, k, N, 1.0)
        X, J = np.zeros((B, 0)), rng.integers(M, size=B).astype(np.int64)
    w = rng.normal(size=model.D) * 2.0
    Y = rng.integers(k, size=(B, N)).astype(np.int64)
    out = np.empty(B)
    (K.entropy_batch if B > 8 else K.entropy_batch_serial)(fm, w, X, J, Y, out)
    ref = [float(-np.sum(P * np.log(P))) for P in (token_probs(model, w, X[b], int(J[b]), Y[b]) for b in range(B))]
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    serial = np.empty(B)
    K.entropy_batch_serial(fm, w, X, J, Y, serial)
    assert np.array_equal(serial, out)


def test_entropy_along_on_policy_samples_is_unbiased_for_the_sequence_entropy():
    """eval/'s entropy_sampled estimator: Σ_i H(p(·|x, ŷ_<i)) along ŷ ~ p_w (sample_batch, then entropy_batch) has
    mean H(p_w(·|x)), the exact sequence entropy by enumeration of all k^N responses; 4000 draws, 4 standard
    errors. Its control, −log p_w(ŷ|x), has the same mean and a larger spread."""
    from reference import Model, all_responses, sequence_loglik
    rng = np.random.default_rng(2)
    k, N, d, B = 3, 4, 2, 4000
    model, fm = Model("bigram", k, N, 1.0, d=d), K.FeatureMap(K.BIGRAM, k, N, 1.0)
    w = rng.normal(size=model.D) * 1.5
    x = rng.normal(size=d)
    ll = np.array([sequence_loglik(model, w, x, 0, y)[0] for y in all_responses(k, N)])
    exact = float(-np.sum(np.exp(ll) * ll))
    X, J = np.repeat(x[None], B, axis=0), np.zeros(B, np.int64)
    states = np.empty((B, 4), np.uint64)
    K.seed_streams(9, 0, states)
    Y, lse, lp, lq = np.empty((B, N), np.int64), np.empty((B, N)), np.empty(B), np.empty(B)
    K.sample_batch(fm, w, w, X, J, K.POLICY, 0.0, states, Y, lse, lp, lq)
    est = np.empty(B)
    K.entropy_batch(fm, w, X, J, Y, est)
    assert abs(est.mean() - exact) < 4 * est.std() / np.sqrt(B), (est.mean(), exact)
    assert abs(-lp.mean() - exact) < 4 * lp.std() / np.sqrt(B)
    assert est.std() < lp.std()
