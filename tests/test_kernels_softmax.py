"""kernels.softmax: logsumexp, log_softmax and inverse-CDF categorical sampling."""
import numpy as np
import pytest

import onlinepg.kernels as K
from onlinepg.kernels.softmax import inverse_cdf
from reference import Xoshiro256pp, chisquare_pvalue, log_softmax

EXTREME_ROWS = [
    [1e4, -1e4],
    [-1e4, 1e4, 0.0],
    [-1e4, -1e4, -1e4],
    [1e4, 1e4, 1e4, 1e4, 1e4, 1e4, 1e4],
    [1e4, 1e4 - 1.0, -1e4, 0.0, 1e4 - 40.0, -1e4, 1e4],
    [-1e4, -1e4 + 0.5, -1e4 + 800.0],
    [0.0, -800.0, -1e4, -707.0, -709.0, 0.0, -30.0],
]


def _rows():
    rng = np.random.default_rng(11)
    rows = [rng.normal(scale=s, size=k) for k in (2, 3, 7) for s in (0.1, 1.0, 30.0)]
    rows += [np.array(r, dtype=np.float64) for r in EXTREME_ROWS]
    return rows


@pytest.mark.parametrize("row", _rows(), ids=lambda r: f"k{len(r)}-max{np.max(np.abs(r)):.0e}")
def test_logsumexp_and_log_softmax_match_reference(row):
    logits = np.ascontiguousarray(row, dtype=np.float64)
    want_lp, want_z = log_softmax(logits)
    z = K.logsumexp(logits)
    assert np.isfinite(z)
    assert z == pytest.approx(want_z, rel=1e-14, abs=1e-12)

    out = np.empty_like(logits)
    z2 = K.log_softmax(logits, out)
    assert z2 == pytest.approx(want_z, rel=1e-14, abs=1e-12)
    assert not np.isnan(out).any() and not np.isposinf(out).any()
    np.testing.assert_allclose(out, want_lp, rtol=1e-13, atol=1e-11)
    # log-probs are differences of numbers of size max|l|, so they carry ~ulp(max|l|) absolute error
    tol = 1e-13 + 4 * len(logits) * np.spacing(np.max(np.abs(logits)))
    assert np.sum(np.exp(out)) == pytest.approx(1.0, abs=tol)

    # out may alias logits
    alias = logits.copy()
    z3 = K.log_softmax(alias, alias)
    assert z3 == z2
    np.testing.assert_array_equal(alias, out)


def _probs(logits):
    return np.exp(log_softmax(logits)[0])


def test_sample_categorical_is_inverse_cdf_of_the_stream(seeded_state):
    """Each draw is the first a with Σ_{b≤a} e^{l_b−max} > u·Σ e^{l−max}, u the stream's next uniform."""
    rng = np.random.default_rng(3)
    for k in (2, 3, 7, 20):
        logits = rng.normal(scale=2.0, size=k)
        weights = np.exp(logits - logits.max())
        cdf = np.cumsum(weights)
        state = seeded_state(8, k)
        ref = Xoshiro256pp(state)
        e = np.empty(k)
        for _ in range(2000):
            a, z = K.sample_categorical(logits, e, state)
            want = int(np.searchsorted(cdf, ref.uniform() * cdf[-1], side="right"))
            assert a == want
        assert [int(v) for v in state] == ref.s
        np.testing.assert_allclose(e, weights, rtol=1e-14)


@pytest.mark.parametrize("k", [2, 3, 7, 20])
def test_sample_categorical_goodness_of_fit(seeded_state, k):
    rng = np.random.default_rng(100 + k)
    logits = rng.normal(scale=1.5, size=k)
    probs = _probs(logits)
    want_z = log_softmax(logits)[1]
    state = seeded_state(55, k)
    e = np.empty(k)
    n = 40000
    draws = np.empty(n, dtype=np.int64)
    for t in range(n):
        a, z = K.sample_categorical(logits, e, state)
        draws[t] = a
        if t < 5:
            assert z == pytest.approx(want_z, rel=1e-14, abs=1e-13)
    assert draws.min() >= 0 and draws.max() < k, "a token outside [0, k)"
    counts = np.bincount(draws, minlength=k)
    assert counts.sum() == n and np.all(counts[probs > 0.01] > 0)
    assert chisquare_pvalue(counts, probs) > 1e-3


@pytest.mark.parametrize(
    "row",
    [
        [0.0, -1e4],
        [-1e4, 0.0],
        [0.0] + [-1e4] * 19,
        [-1e4] * 19 + [0.0],
        [-1e4] * 9 + [0.0, -800.0, 0.3] + [-1e4] * 8,
        [-1e4, -1e4, -1e4, -1e4, -1e4, -1e4, 0.0, -750.0],
        [5.0, -1e4, 4.0, -1e4, -1e4, -1e4, -1e4],
    ],
    ids=lambda r: f"k{len(r)}",
)
def test_sample_categorical_never_returns_zero_probability_token(seeded_state, row):
    logits = np.array(row, dtype=np.float64)
    k = logits.shape[0]
    allowed = set(np.flatnonzero(logits - logits.max() >= -708.0).tolist())
    probs = _probs(logits)
    want_z = log_softmax(logits)[1]
    state = seeded_state(99, k)
    e = np.empty(k)
    draws = np.empty(5000, dtype=np.int64)
    for t in range(draws.shape[0]):
        a, z = K.sample_categorical(logits, e, state)
        draws[t] = a
        assert z == pytest.approx(want_z, rel=1e-14, abs=1e-12)
    assert set(np.unique(draws).tolist()) <= allowed
    assert chisquare_pvalue(np.bincount(draws, minlength=k), probs) > 1e-3


def test_inverse_cdf_edges():
    w = np.array([0.5, 0.5])
    assert inverse_cdf(w, 0.0) == 0
    assert inverse_cdf(w, 0.5) == 1  # first a whose partial sum is strictly above target
    # a target at or beyond the total (rounding) falls back to the last token with positive weight
    w = np.array([1.0, 1.0, 0.0, 0.0])
    assert inverse_cdf(w, 2.0) == 1
    assert inverse_cdf(w, 5.0) == 1
    w = np.zeros(20)
    w[[3, 11]] = 1.0
    for target, want in ((0.0, 3), (0.999, 3), (1.0, 11), (1.5, 11), (2.0, 11), (3.0, 11)):
        assert inverse_cdf(w, target) == want
    w = np.zeros(20)
    w[0] = 1.0
    assert inverse_cdf(w, 0.0) == 0 and inverse_cdf(w, 1.0) == 0
