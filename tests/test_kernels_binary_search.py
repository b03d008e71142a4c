"""pg_process with variant = 'binary_search': the first error of a wrong rollout is located with at most
⌈log₂ N⌉ prefix checks after the one check of the whole rollout — and with exactly the counts of a balanced
bisection — at N ≥ 8, where a linear scan (or any unbalanced search) needs more.

Rollouts are constructed: a cells policy with a huge score on a chosen response samples that response, and the
correct response y* agrees with it up to a chosen position L. With ``m_tok = 0`` the kernel makes no
extension queries, so the round's PRM count is 1 + (prefix checks of the search) exactly.
"""
import math

import numpy as np
import pytest

import onlinepg.kernels as K
from onlinepg.engine import run
from onlinepg.trace import read_table
from test_kernels_rounds import kernel_params

O = K.codes


def optimal_total_checks(n):
    """Σ over the n possible answers of the checks a balanced bisection makes: the minimal external path
    length of a binary tree with n leaves, n⌊log₂ n⌋ + 2(n − 2^⌊log₂ n⌋)."""
    f = n.bit_length() - 1
    return n * f + 2 * (n - 2 ** f)


def one_round(N, L, k=3, seed=0):
    """Play one binary-search round whose rollout is correct exactly up to position L (L = N: all correct).
    Returns (PRM queries, trace row)."""
    rng = np.random.default_rng(seed + 100 * N + L)
    y = rng.integers(0, k, N).astype(np.int64)                 # the rollout the policy will produce
    ystar = y.copy()
    if L < N:
        ystar[L] = (y[L] + 1 + rng.integers(0, k - 1)) % k
        ystar[L + 1:] = rng.integers(0, k, N - L - 1)
    w = np.zeros(N * k)                                        # cells, M = 1: w[(0·N + i)·k + a]
    w[np.arange(N) * k + y] = 60.0                              # p(y) = 1 − O(k·N·e^−60)
    fm = K.FeatureMap(K.CELLS, k, N, 1.0)
    kind, rp = kernel_params(dict(algo="pg_process", variant="binary_search", m_tok=0), fm)
    counters = np.zeros(O.NCOUNT)
    trace = np.full((2, O.NTRACE), np.nan)
    m = K.run_rounds(kind, rp, fm, w, np.zeros(N * k), np.zeros(N * k), np.zeros((1, 0)), np.zeros(1, np.int64),
                     ystar[None, :].copy(), 0, 7, counters, 1, trace)
    assert m == 1
    row = trace[0]
    assert row[O.T_CORRECT] == (L == N)
    assert row[O.T_REWARD] == L / N, "the search did not find the correct prefix"
    assert counters[O.C_TOKENS] == N                            # the rollout only: no extension draws
    return counters[O.C_PRM], row


@pytest.mark.parametrize("N", [8, 12, 16, 33])
def test_binary_search_prefix_checks_on_constructed_rollouts(N):
    bound = math.ceil(math.log2(N))
    checks = []
    for L in range(N):                                         # every position of the first error
        prm, _ = one_round(N, L)
        checks.append(prm - 1)                                  # minus the check of the whole rollout
        assert prm <= 1 + bound, f"L={L}: {prm:.0f} PRM queries > 1 + ⌈log₂ {N}⌉"
    assert sum(checks) == optimal_total_checks(N), checks
    assert min(checks) >= math.floor(math.log2(N))
    if N & (N - 1) == 0:                                       # a power of two: every answer costs log₂ N
        assert checks == [math.log2(N)] * N
    assert one_round(N, N)[0] == 1                              # a correct rollout: one check, no search


def test_optimal_total_checks_formula():
    """The oracle itself, against brute force over all decision trees of n leaves (n ≤ 12)."""
    best = {1: 0}
    for n in range(2, 13):
        best[n] = n + min(best[a] + best[n - a] for a in range(1, n))
        assert optimal_total_checks(n) == best[n]


def test_engine_binary_search_checks_per_wrong_round(tmp_path):
    """Through the engine with exploration on (m_tok = 2): every wrong round's PRM queries are 1 (the rollout)
    + 3 (= log₂ 8, the search) + its extension candidates, each of which is also a sampled token."""
    N = 8
    cfg = {"task": {"kind": "cells", "k": 3, "N": N, "M": 4},
           "base": {"kind": "alpha", "alpha": 0.3},
           "algo": {"name": "pg_process", "variant": "binary_search", "m_tok": 2},
           "run": {"rounds": 300, "eval_every": 100, "trace_every": 1, "progress": False}}
    run(cfg, tmp_path / "r")
    t = read_table(tmp_path / "r" / "rounds")
    dprm = np.diff(t.column("prm_queries").to_numpy(), prepend=0)
    dtok = np.diff(t.column("tokens_sampled").to_numpy(), prepend=0)
    wrong = t.column("correct").to_numpy() == 0
    assert wrong.sum() > 50 and (~wrong).sum() > 0
    search = dprm - 1 - (dtok - N)
    assert np.all(search[wrong] == 3), np.unique(search[wrong])
    assert np.all(dprm[~wrong] == 1)
