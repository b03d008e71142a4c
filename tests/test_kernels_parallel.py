"""The parallel paths, at sizes where they are actually taken (rows ≥ ``kernels.PARALLEL_MIN_ROWS``; below it
``FeatureSpec.kernel`` picks the serial twins, which is all the smaller tests in the suite exercise):

* every batch kernel through ``Policy`` (sample, loglik, grad, margin) for bigram, cells and a custom φ, against
  the dense NumPy reference, bit-identical for 1 and 2 threads and to the serial twins;
* the task kernels (contexts, teacher responses, cell ids): a draw above the threshold equals the same draw in
  pieces below it;
* a whole engine run whose batched steps and evaluations use the parallel kernels, bit-identical for 1 and 2
  threads.
"""
import math

import numba
import numpy as np
import pytest

import onlinepg as op
import onlinepg.kernels as K
from onlinepg.engine import run
from reference import Model, score_grad, sequence_loglik
from test_policy import bigram_phi as bigram_phi_k4   # the bigram map (k = 4) as a dense custom φ
from test_resume_all import assert_same_folder

B = 2 * K.PARALLEL_MIN_ROWS + 37           # several blocks, and a ragged last one
K4, N3, D3 = 4, 3, 3


@pytest.fixture(autouse=True)
def no_work_threshold(monkeypatch):
    """The sizes here are small in lanes (N·k = 12 per row): drop the work threshold so that the row threshold
    alone decides, as it does for the paper's sizes."""
    monkeypatch.setattr(K, "PARALLEL_MIN_LANES", 0)


def test_small_work_takes_the_serial_twin_whatever_the_rows(monkeypatch):
    """Rows alone do not wake the thread pool: below PARALLEL_MIN_LANES lanes (rows × N·k) the serial twin runs."""
    from onlinepg.kernels import serial
    monkeypatch.setattr(K, "PARALLEL_MIN_LANES", serial.PARALLEL_MIN_LANES)     # the shipped value
    small = op.FeatureSpec("bigram", 16, 16, d=16)     # the default job: 256 rows × 256 lanes = 65 536
    assert small.kernel("pg_step", 256) is K.pg_step_serial
    big = op.FeatureSpec("bigram", 32, 128, d=32)      # fig1: 1024 rows × 4096 lanes
    assert big.kernel("pg_step", 1024) is K.pg_step
    assert big.kernel("pg_step", K.PARALLEL_MIN_ROWS - 1) is K.pg_step_serial


_CUSTOM = {}


def _spec(kind):
    """(FeatureSpec, reference Model); the custom spec is built once (its kernels compile per spec, uncached)."""
    if kind == "custom":
        if numba.config.DISABLE_JIT:
            pytest.skip("a custom φ must be an @njit dispatcher, which NUMBA_DISABLE_JIT=1 turns off")
        if not _CUSTOM:
            big = op.FeatureSpec("bigram", K4, N3, d=D3)
            _CUSTOM["spec"] = (op.FeatureSpec("custom", K4, N3, d=D3, D_custom=big.D, phi=bigram_phi_k4),
                               Model("bigram", K4, N3, 1.0, d=D3, M=0))
        return _CUSTOM["spec"]
    if kind == "bigram":
        return op.FeatureSpec("bigram", K4, N3, d=D3), Model("bigram", K4, N3, 1.0, d=D3, M=0)
    return op.FeatureSpec("cells", K4, N3, M=5), Model("cells", K4, N3, 1.0, d=0, M=5)


def _data(kind, spec, seed=0):
    rs = np.random.default_rng(seed)
    X = rs.normal(size=(B, spec.context_dim))
    J = rs.integers(0, 5, B).astype(np.int64) if kind == "cells" else np.zeros(B, np.int64)
    w = rs.normal(size=spec.D)
    return X, J, w, rs


def _all_outputs(pol, base, X, J, adv, Ys):
    s = pol.sample(X, J, "mixture", base=base, seed=9, first_stream=5)
    ll, mn, tok = pol.loglik(X, J, s.Y)
    g = pol.grad(X, J, s.Y, adv, scale=0.5)
    gaps = pol.margin_gaps(X, J, Ys)
    return [s.Y, s.logp, s.logq, s.lse, ll, mn, tok, g, gaps]


def _gap(model, w, x, j, ystar):
    gap, prev = math.inf, 0
    for i in range(model.N):
        Phi = model.phi_matrix(x, j, i, prev)
        gap = min(gap, min(float(w @ (Phi[ystar[i]] - Phi[a])) for a in range(model.k) if a != ystar[i]))
        prev = int(ystar[i])
    return gap


@pytest.mark.parametrize("kind", ["bigram", "cells", "custom"])
def test_batch_kernels_above_the_parallel_threshold(kind, num_threads):
    spec, model = _spec(kind)
    X, J, w, rs = _data(kind, spec)
    for name in ("sample_batch", "loglik_batch", "grad_batch", "margin_batch"):
        assert spec.kernel(name, B) is getattr(spec.kernels, name)          # the parallel kernel is the one used
        assert spec.kernel(name, B - 1) is not spec.kernel(name, K.PARALLEL_MIN_ROWS - 1)
    pol, base = op.Policy(spec, w), op.Policy(spec, rs.normal(size=spec.D))
    adv = rs.normal(size=(B, N3))
    Ys = rs.integers(0, K4, size=(B, N3)).astype(np.int64)
    outs = {}
    for n in (1, 2):
        with num_threads(n):
            outs[n] = _all_outputs(pol, base, X, J, adv, Ys)
    for a, b in zip(outs[1], outs[2]):
        assert np.array_equal(a, b), "1 and 2 threads differ"
    Y, logp, logq, lse, ll, mn, tok, g, gaps = outs[2]
    # the serial twins give the same bits
    ks = spec.kernels
    ll_s, mn_s, tok_s = np.empty(B), np.empty(B), np.empty((B, N3))
    ks.loglik_batch_serial(spec.fm, w, X, J, Y, ll_s, mn_s, tok_s)
    g_s = np.zeros(spec.D)
    ks.grad_batch_serial(spec.fm, w, X, J, Y, adv, lse, True, 0.5, g_s)
    assert np.array_equal(ll, ll_s) and np.array_equal(tok, tok_s) and np.array_equal(g, g_s)
    # and the dense reference the same values
    g_ref = np.zeros(spec.D)
    for b in range(B):
        total, worst, tok_ref, _ = sequence_loglik(model, w, X[b], int(J[b]), Y[b])
        assert ll[b] == pytest.approx(total, rel=1e-12, abs=1e-12) and logp[b] == pytest.approx(total, rel=1e-12)
        assert mn[b] == pytest.approx(worst, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(tok[b], tok_ref, rtol=1e-12, atol=1e-12)
        g_ref += score_grad(model, w, X[b], int(J[b]), Y[b], adv[b])
        assert gaps[b] == pytest.approx(_gap(model, w, X[b], int(J[b]), Ys[b]), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(g, 0.5 * g_ref, rtol=1e-10, atol=1e-10)
    # the samples are the behaviour's: ½ base + ½ uniform per sequence, so log q is exactly that mixture
    lq0 = np.array([sequence_loglik(model, base.w, X[b], int(J[b]), Y[b])[0] for b in range(B)])
    np.testing.assert_allclose(logq, np.logaddexp(np.log(0.5) + lq0, np.log(0.5) - N3 * np.log(K4)), rtol=1e-12)


def test_custom_map_matches_bigram_above_the_threshold():
    """The custom φ is the bigram map: the same samples and scores, bit for bit in the integers."""
    big, _ = _spec("bigram")
    cus, _ = _spec("custom")
    X, J, w, rs = _data("bigram", big, seed=1)
    sb = op.Policy(big, w).sample(X, None, "policy", seed=4)
    sc = op.Policy(cus, w).sample(X, None, "policy", seed=4)
    np.testing.assert_array_equal(sb.Y, sc.Y)
    np.testing.assert_allclose(sb.logp, sc.logp, rtol=1e-12, atol=1e-13)
    adv = rs.normal(size=(B, N3))
    np.testing.assert_allclose(op.Policy(big, w).grad(X, None, sb.Y, adv), op.Policy(cus, w).grad(X, None, sb.Y, adv),
                               rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("task", [
    op.TeacherTask(5, 4, 3, contexts_kind="mixture", centres=3, sigma=0.3, seed=2),
    op.TeacherTask(5, 4, 3, contexts_kind="rademacher", seed=2),
    op.CellsTask(4, 3, M=50, seed=2),
], ids=["teacher-mixture", "teacher-rademacher", "cells"])
def test_task_draws_above_the_threshold_equal_draws_in_small_pieces(task, num_threads):
    n, piece = 3 * K.PARALLEL_MIN_ROWS + 11, K.PARALLEL_MIN_ROWS // 2 - 3
    assert piece < K.PARALLEL_MIN_ROWS <= n
    draws = {}
    for t in (1, 2):
        with num_threads(t):
            draws[t] = task.draw(17, n)
    small = [task.draw(17 + s, min(piece, n - s)) for s in range(0, n, piece)]
    for field in ("X", "J", "Ystar"):
        whole = getattr(draws[2], field)
        assert np.array_equal(whole, getattr(draws[1], field)), field
        assert np.array_equal(whole, np.concatenate([getattr(b, field) for b in small])), field
    if isinstance(task, op.TeacherTask):     # y* is the argmax path of the teacher, row by row
        X, Y = draws[2].X, draws[2].Ystar
        s = X @ task.W1s.T
        assert np.array_equal(Y[:, 0], s.argmax(axis=1))
        for i in range(1, task.N):
            assert np.array_equal(Y[:, i], (s + task.W2s[:, Y[:, i - 1]].T).argmax(axis=1))


def test_engine_run_identical_on_1_and_2_threads(tmp_path, num_threads):
    """pg_batch with batch 256 (parallel sample / grad / loglik every step) and 300 held-out contexts (parallel
    evaluation): the folder written with 2 threads is the one written with 1, bit for bit."""
    cfg = {"task": {"kind": "teacher", "d": 6, "k": 4, "N": 4, "contexts": "mixture", "centres": 4,
                    "test_contexts": 300, "sigma": 0.3},
           "base": {"kind": "pretrain", "steps": 2, "batch": 200},
           "algo": {"name": "pg_batch", "reward": "pm1", "baseline": "batch_mean", "batch": 256,
                    "lr_rule": "adagrad", "lr": 0.2},
           "run": {"rounds": 6, "eval_every": 2, "checkpoint_every": 4, "keep_checkpoints": 0, "progress": False}}
    assert cfg["algo"]["batch"] >= K.PARALLEL_MIN_ROWS and cfg["task"]["test_contexts"] >= K.PARALLEL_MIN_ROWS
    summaries = {}
    for n in (1, 2):
        with num_threads(n):
            summaries[n] = run(cfg, tmp_path / f"t{n}")
        assert summaries[n]["kernel_threads"] == n
    assert summaries[2]["updates"] > 0
    assert_same_folder(tmp_path / "t1", tmp_path / "t2", ignore=("kernel_threads",))
