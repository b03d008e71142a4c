"""kernels.sequence.sample_sequence for every behaviour policy: the distribution of whole responses against
the exact behaviour distribution (enumerated over all k^N responses), and the returned log p / log q / lse."""
import math

import numpy as np
import pytest

import onlinepg.kernels as K
from reference import (all_responses, behaviour_distribution, behaviour_logq, chisquare_pvalue, response_index,
                       sequence_loglik)

BEHAVIOURS = K.BEHAVIOURS
EPS = 0.3


def _small_case(make_case, kind):
    # k = 3, N = 2: 9 outcomes; weights large enough that p_w, p_w0 and uniform are far apart
    return make_case(kind, 3, 2, tscale=1.0 / math.sqrt(2.0), d=3, M=2, seed=61, wscale=1.5)


@pytest.mark.parametrize("kind", ["bigram", "cells"])
@pytest.mark.parametrize("name", list(BEHAVIOURS))
def test_sample_sequence_distribution_and_scores(make_case, scratch, seeded_state, kind, name):
    case = _small_case(make_case, kind)
    behaviour = BEHAVIOURS[name]
    Yall = all_responses(case.k, case.N)
    probs = behaviour_distribution(case.model, case.w, case.w0, case.x, case.j, name, EPS)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    ref_logp = np.array([sequence_loglik(case.model, case.w, case.x, case.j, y)[0] for y in Yall])
    ref_lse = np.array([sequence_loglik(case.model, case.w, case.x, case.j, y)[3] for y in Yall])

    n = 20000
    state = seeded_state(1000 + behaviour, 0)  # one stream, drawn sequentially
    y = np.empty(case.N, dtype=np.int64)
    lse = np.empty(case.N)
    s = K.sequence_workspace(case.k)
    idx = np.empty(n, dtype=np.int64)
    logp = np.empty(n)
    logq = np.empty(n)
    lses = np.empty((n, case.N))
    for t in range(n):
        logp[t], logq[t] = K.sample_sequence(case.fm, case.w, case.w0, case.x, case.j, behaviour, EPS, state,
                                             y, lse, s)
        idx[t] = response_index(y[None, :], case.k)[0]
        lses[t] = lse
    assert idx.min() >= 0 and idx.max() < len(Yall), "a response outside the vocabulary"
    counts = np.bincount(idx, minlength=len(Yall))
    assert counts.sum() == n and np.all(counts[probs > 0.01] > 0)
    p = chisquare_pvalue(counts, probs)
    assert p > 1e-3, f"{name}: counts {counts.tolist()} vs expected {(n * probs).round(1).tolist()} (p={p:.2e})"
    np.testing.assert_allclose(logp, ref_logp[idx], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(logq, np.log(probs)[idx], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lses, ref_lse[idx], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,eps", [(n, EPS) for n in BEHAVIOURS] + [("eps_mixture", 0.0), ("eps_mixture", 1.0)])
def test_sample_sequence_scores_on_case_grid(case, scratch, seeded_state, name, eps):
    """Returned log p_w(y|x), log q(y|x) and the per-token log-normalisers, for k ∈ {2,3,7}, N ∈ {1,2,5}."""
    behaviour = BEHAVIOURS[name]
    state = seeded_state(77, behaviour)
    y = np.empty(case.N, dtype=np.int64)
    lse = np.empty(case.N)
    s = K.sequence_workspace(case.k)
    for _ in range(20):
        lp, lq = K.sample_sequence(case.fm, case.w, case.w0, case.x, case.j, behaviour, eps, state, y, lse, s)
        assert y.min() >= 0 and y.max() < case.k
        total, _, _, ref_lse = sequence_loglik(case.model, case.w, case.x, case.j, y)
        assert lp == pytest.approx(total, rel=1e-12, abs=1e-12)
        want_q = behaviour_logq(case.model, case.w, case.w0, case.x, case.j, y, name, eps)
        assert lq == pytest.approx(want_q, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(lse, ref_lse, rtol=1e-12, atol=1e-12)


def test_eps_mixture_extremes_match_policy_and_uniform(make_case, scratch, seeded_state):
    """ε = 0 draws like the policy and ε = 1 like the uniform behaviour (distributionally)."""
    case = _small_case(make_case, "bigram")
    Yall = all_responses(case.k, case.N)
    for eps, name in ((0.0, "policy"), (1.0, "uniform")):
        probs = behaviour_distribution(case.model, case.w, case.w0, case.x, case.j, name)
        state = seeded_state(4242, int(eps))
        y = np.empty(case.N, dtype=np.int64)
        lse = np.empty(case.N)
        s = K.sequence_workspace(case.k)
        idx = np.empty(10000, dtype=np.int64)
        for t in range(idx.shape[0]):
            K.sample_sequence(case.fm, case.w, case.w0, case.x, case.j, K.EPS_MIXTURE, eps, state, y, lse, s)
            idx[t] = response_index(y[None, :], case.k)[0]
        assert chisquare_pvalue(np.bincount(idx, minlength=len(Yall)), probs) > 1e-3


def test_logaddexp_matches_numpy():
    vals = [0.0, -1.0, 3.5, -745.0, -1e4, 1e4, -math.inf]
    for a in vals:
        for b in vals:
            want = np.logaddexp(a, b)
            got = K.logaddexp(a, b)
            if math.isinf(want):
                assert got == want
            else:
                assert got == pytest.approx(want, rel=1e-15, abs=1e-15), (a, b)
