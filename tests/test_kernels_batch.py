"""kernels.batch: sample_batch reproducibility (seeds, chunking, threads), its distribution across streams,
loglik_batch and margin_batch against per-sequence references."""
import math

import numpy as np
import pytest

import onlinepg.kernels as K
from reference import (all_responses, behaviour_distribution, behaviour_logq, chisquare_pvalue, response_index,
                       sequence_loglik)

BEHAVIOURS = K.BEHAVIOURS
EPS = 0.3
KINDS = ["bigram", "cells"]


def _contexts(case, B, seed):
    rng = np.random.default_rng(seed)
    X = np.ascontiguousarray(rng.normal(size=(B, case.model.d)))
    J = rng.integers(max(case.model.M, 1), size=B).astype(np.int64)
    return X, J


def _sample(case, X, J, behaviour, seed, first=0, eps=EPS):
    B = X.shape[0]
    states = np.zeros((B, 4), dtype=np.uint64)
    K.seed_streams(seed, first, states)
    Y = np.full((B, case.N), -1, dtype=np.int64)
    lse = np.full((B, case.N), np.nan)
    logp = np.full(B, np.nan)
    logq = np.full(B, np.nan)
    K.sample_batch(case.fm, case.w, case.w0, np.ascontiguousarray(X), np.ascontiguousarray(J), behaviour, eps,
                   states, Y, lse, logp, logq)
    return Y, lse, logp, logq, states


def test_n_blocks():
    assert K.n_blocks(0) == 0
    assert K.n_blocks(1) == 1
    assert K.n_blocks(K.BLOCK) == 1
    assert K.n_blocks(K.BLOCK + 1) == 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(BEHAVIOURS))
def test_sample_batch_reproducible_and_chunk_independent(make_case, kind, name):
    case = make_case(kind, 7, 5, tscale=1.0 / math.sqrt(2.0), M=3, seed=71)
    B = 100
    X, J = _contexts(case, B, 72)
    whole = _sample(case, X, J, BEHAVIOURS[name], seed=73)
    again = _sample(case, X, J, BEHAVIOURS[name], seed=73)
    for a, b in zip(whole, again):
        assert np.array_equal(a, b)
    other = _sample(case, X, J, BEHAVIOURS[name], seed=74)
    assert not np.array_equal(whole[0], other[0])
    for cut in (37, 64):  # inside a block and on a block boundary
        head = _sample(case, X[:cut], J[:cut], BEHAVIOURS[name], seed=73, first=0)
        tail = _sample(case, X[cut:], J[cut:], BEHAVIOURS[name], seed=73, first=cut)
        for a, h, t in zip(whole, head, tail):
            assert np.array_equal(a, np.concatenate([h, t]))  # Y, lse, logp, logq and the advanced states


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["policy", "mixture", "eps_mixture"])
def test_sample_batch_identical_across_thread_counts(make_case, num_threads, kind, name):
    case = make_case(kind, 7, 5, M=3, seed=81)
    X, J = _contexts(case, 300, 82)
    out = {}
    for n in (1, 2):
        with num_threads(n):
            out[n] = _sample(case, X, J, BEHAVIOURS[name], seed=83)
    for a, b in zip(out[1], out[2]):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_sample_batch_rows_are_sample_sequence_on_their_streams(make_case, scratch, kind):
    case = make_case(kind, 3, 5, M=3, seed=91)
    B = 40
    X, J = _contexts(case, B, 92)
    for name, behaviour in BEHAVIOURS.items():
        Y, lse, logp, logq, _ = _sample(case, X, J, behaviour, seed=93, first=5)
        for b in range(B):
            state = np.zeros(4, dtype=np.uint64)
            K.seed_stream(93, 5 + b, state)
            y = np.empty(case.N, dtype=np.int64)
            ls = np.empty(case.N)
            lp, lq = K.sample_sequence(case.fm, case.w, case.w0, X[b], int(J[b]), behaviour, EPS, state, y, ls,
                                       K.sequence_workspace(case.k))
            if kind == "bigram" and behaviour == K.POLICY:
                # the batch kernel's factorised bigram path: same draws, normalisers equal to rounding
                assert np.array_equal(y, Y[b]), (name, b)
                np.testing.assert_allclose(ls, lse[b], rtol=1e-13, atol=1e-13)
                assert lp == pytest.approx(logp[b], rel=1e-13) and lq == pytest.approx(logq[b], rel=1e-13)
                continue
            assert np.array_equal(y, Y[b]) and np.array_equal(ls, lse[b]), (name, b)
            assert lp == logp[b] and lq == logq[b], (name, b)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(BEHAVIOURS))
def test_sample_batch_distribution_across_streams(make_case, kind, name):
    """One draw from each of B streams with the same context: whole-response frequencies vs the exact q."""
    case = make_case(kind, 3, 2, tscale=1.0 / math.sqrt(2.0), d=3, M=2, seed=61, wscale=1.5)
    B = 20000
    X = np.repeat(case.x[None, :], B, axis=0)  # a writable copy: read-only arrays are another signature
    J = np.full(B, case.j, dtype=np.int64)
    Y, lse, logp, logq, _ = _sample(case, X, J, BEHAVIOURS[name], seed=2000 + BEHAVIOURS[name])
    probs = behaviour_distribution(case.model, case.w, case.w0, case.x, case.j, name, EPS)
    idx = response_index(Y, case.k)
    counts = np.bincount(idx, minlength=probs.shape[0])
    p = chisquare_pvalue(counts, probs)
    assert p > 1e-3, f"{name}: counts {counts.tolist()} vs expected {(B * probs).round(1).tolist()} (p={p:.2e})"
    Yall = all_responses(case.k, case.N)
    ref_logp = np.array([sequence_loglik(case.model, case.w, case.x, case.j, y)[0] for y in Yall])
    np.testing.assert_allclose(logp, ref_logp[idx], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(logq, np.log(probs)[idx], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_sample_batch_scores_with_distinct_contexts(make_case, kind):
    case = make_case(kind, 7, 5, M=4, seed=95)
    X, J = _contexts(case, 50, 96)
    for name, behaviour in BEHAVIOURS.items():
        Y, lse, logp, logq, _ = _sample(case, X, J, behaviour, seed=97)
        for b in range(X.shape[0]):
            total, _, _, ref_lse = sequence_loglik(case.model, case.w, X[b], J[b], Y[b])
            assert logp[b] == pytest.approx(total, rel=1e-12, abs=1e-12)
            want_q = behaviour_logq(case.model, case.w, case.w0, X[b], J[b], Y[b], name, EPS)
            assert logq[b] == pytest.approx(want_q, rel=1e-12, abs=1e-12), (name, b)
            np.testing.assert_allclose(lse[b], ref_lse, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_loglik_batch_matches_reference(make_case, num_threads, kind):
    case = make_case(kind, 7, 5, tscale=1.0 / math.sqrt(2.0), M=4, seed=101)
    B = 70
    X, J = _contexts(case, B, 102)
    Y = np.random.default_rng(103).integers(case.k, size=(B, case.N)).astype(np.int64)
    out = {}
    for n in (1, 2):
        with num_threads(n):
            ll = np.full(B, np.nan)
            mn = np.full(B, np.nan)
            tok = np.full((B, case.N), np.nan)
            K.loglik_batch(case.fm, case.w, X, J, Y, ll, mn, tok)
            out[n] = (ll, mn, tok)
    for a, b in zip(out[1], out[2]):
        assert np.array_equal(a, b)
    ll, mn, tok = out[1]
    for b in range(B):
        total, worst, tok_ref, _ = sequence_loglik(case.model, case.w, X[b], J[b], Y[b])
        assert ll[b] == pytest.approx(total, rel=1e-13, abs=1e-13)
        assert mn[b] == pytest.approx(worst, rel=1e-13, abs=1e-13)
        np.testing.assert_allclose(tok[b], tok_ref, rtol=1e-13, atol=1e-13)


def _ref_gap(model, w, x, j, ystar):
    prev = 0
    gap = math.inf
    for i in range(model.N):
        Phi = model.phi_matrix(x, j, i, prev)
        for a in range(model.k):
            if a != ystar[i]:
                gap = min(gap, float(w @ (Phi[ystar[i]] - Phi[a])))
        prev = int(ystar[i])
    return gap


@pytest.mark.parametrize("kind", KINDS)
def test_correct_path_gap_and_margin_batch(make_case, scratch, kind):
    case = make_case(kind, 7, 5, M=4, seed=111)
    B = 40
    X, J = _contexts(case, B, 112)
    Ystar = np.random.default_rng(113).integers(case.k, size=(B, case.N)).astype(np.int64)
    gaps = np.full(B, np.nan)
    K.margin_batch(case.fm, case.w, X, J, Ystar, gaps)
    for b in range(B):
        want = _ref_gap(case.model, case.w, X[b], J[b], Ystar[b])
        got = K.correct_path_gap(case.fm, case.w, X[b], int(J[b]), Ystar[b], K.sequence_workspace(case.k))
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert gaps[b] == got


@pytest.mark.parametrize("kind", KINDS)
def test_serial_twins_bit_identical_to_parallel_kernels(make_case, kind):
    """``<name>_serial`` is the same code without the thread pool: identical outputs, bit for bit."""
    case = make_case(kind, 7, 5, M=3, seed=121)
    B = 100
    X, J = _contexts(case, B, 122)

    def run_sample(fn):
        states = np.zeros((B, 4), dtype=np.uint64)
        K.seed_streams(123, 0, states)
        Y = np.zeros((B, case.N), dtype=np.int64)
        lse = np.zeros((B, case.N))
        logp = np.zeros(B)
        logq = np.zeros(B)
        fn(case.fm, case.w, case.w0, X, J, K.MIXTURE, EPS, states, Y, lse, logp, logq)
        return Y, lse, logp, logq, states

    par, ser = run_sample(K.sample_batch), run_sample(K.sample_batch_serial)
    for a, b in zip(par, ser):
        assert np.array_equal(a, b)
    Y, lse = par[0], par[1]

    def run_loglik(fn):
        out = (np.zeros(B), np.zeros(B), np.zeros((B, case.N)))
        fn(case.fm, case.w, X, J, Y, *out)
        return out

    for a, b in zip(run_loglik(K.loglik_batch), run_loglik(K.loglik_batch_serial)):
        assert np.array_equal(a, b)

    adv = np.random.default_rng(124).normal(size=(B, case.N))
    g_par = np.zeros(case.model.D)
    g_ser = np.zeros(case.model.D)
    K.grad_batch(case.fm, case.w, X, J, Y, adv, lse, True, 0.5, g_par)
    K.grad_batch_serial(case.fm, case.w, X, J, Y, adv, lse, True, 0.5, g_ser)
    assert np.array_equal(g_par, g_ser)

    gaps_par = np.zeros(B)
    gaps_ser = np.zeros(B)
    K.margin_batch(case.fm, case.w, X, J, Y, gaps_par)
    K.margin_batch_serial(case.fm, case.w, X, J, Y, gaps_ser)
    assert np.array_equal(gaps_par, gaps_ser)


def test_parallel_kernels_are_race_free_and_match_serial_twins():
    """Regression: scratch allocated inside a prange body is hoisted by Numba and shared by threads.
    Repeated parallel calls over many blocks must agree with each other and with the serial twin."""
    import hashlib
    rs = np.random.default_rng(7)
    B, N, d, k = 640, 6, 5, 7
    X = np.sign(rs.normal(size=(B, d)))
    J = np.zeros(B, np.int64)
    Y = rs.integers(0, k, (B, N)).astype(np.int64)
    adv = rs.normal(size=(B, N))
    lse = np.zeros((B, N))
    w = rs.normal(size=d * k + k * k)
    fm = K.FeatureMap(K.BIGRAM, k, N, 1.0)

    def digest(*arrays):
        return hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()

    def grad(fn):
        g = np.zeros(w.size)
        fn(fm, w, X, J, Y, adv, lse, False, 1.0, g)
        return digest(g)

    def sample(fn):
        st = np.empty((B, 4), np.uint64)
        K.seed_streams(3, 0, st)
        Ys, L, lp, lq = np.empty((B, N), np.int64), np.empty((B, N)), np.empty(B), np.empty(B)
        fn(fm, w, w, X, J, K.POLICY, 0.0, st, Ys, L, lp, lq)
        return digest(Ys, L, lp)

    def loglik(fn):
        ll, mn, tok = np.empty(B), np.empty(B), np.empty((B, N))
        fn(fm, w, X, J, Y, ll, mn, tok)
        return digest(ll, mn, tok)

    def contexts(fn):
        Xc = np.empty((B, 67))
        fn(11, 5, Xc)
        return digest(Xc)

    def teacher(fn):
        Yt = np.empty((B, N), np.int64)
        fn(rs_teacher[0], rs_teacher[1], X, Yt)
        return digest(Yt)

    rs_teacher = (np.random.default_rng(1).normal(size=(k, d)), np.random.default_rng(2).normal(size=(k, k)))
    for check, par, ser in ((grad, K.grad_batch, K.grad_batch_serial),
                            (sample, K.sample_batch, K.sample_batch_serial),
                            (loglik, K.loglik_batch, K.loglik_batch_serial),
                            (contexts, K.rademacher_contexts, K.rademacher_contexts_serial),
                            (teacher, K.teacher_responses, K.teacher_responses_serial)):
        want = check(ser)
        assert all(check(par) == want for _ in range(8)), par.__name__


def test_bigram_fast_path_falls_back_exactly_on_extreme_logits():
    """±1e4 weights make the factorised numerator underflow; those tokens take the exact path."""
    rs = np.random.default_rng(5)
    B, N, d, k = 96, 5, 3, 4
    fm = K.FeatureMap(K.BIGRAM, k, N, 1.0)
    w = np.sign(rs.normal(size=d * k + k * k)) * 1e4
    X = np.sign(rs.normal(size=(B, d)))
    J = np.zeros(B, np.int64)
    Y = rs.integers(0, k, (B, N)).astype(np.int64)
    ll, mn, tok = np.empty(B), np.empty(B), np.empty((B, N))
    K.loglik_batch(fm, w, X, J, Y, ll, mn, tok)
    ws = K.sequence_workspace(k)
    for b in range(B):
        ref_tok = np.empty(N)
        ref_ll, ref_mn = K.sequence_loglik(fm, w, X[b], 0, Y[b], ref_tok, ws)
        np.testing.assert_allclose(tok[b], ref_tok, rtol=1e-12, atol=1e-9)
    assert np.all(np.isfinite(tok)) and tok.min() < -1e3
    g = np.zeros(w.size)
    K.grad_batch(fm, w, X, J, Y, np.ones((B, N)), np.zeros((B, N)), False, 1.0, g)
    g_ref = np.zeros(w.size)
    for b in range(B):
        K.accumulate_grad(fm, w, X[b], 0, Y[b], np.ones(N), np.zeros(N), False, 1.0, g_ref, ws)
    np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-9)
