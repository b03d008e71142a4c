"""Same inputs ⇒ same bits whatever Numba's compile/cache state.

A jitted caller carries its own copy of every callee it does not inline (linked in as ``linkonce_odr`` and
optimised again inside the caller's module); the callee's own library defines the same symbol. Which copy a
call reaches depends on what the process has loaded: in a process that compiles from scratch the callee's
library exists first and wins; a process that loads the caller from the on-disk cache runs the caller's copy
unless something else loaded the callee. The kernels promise bit-identical results in every case, so the
copies must compute the same bits however often and wherever LLVM optimised them.

Each case runs the same batch kernels in a fresh interpreter on one NUMBA_CACHE_DIR: cold (everything
compiled), warm (everything loaded), and warm again with the per-sequence callees called first (their own
libraries loaded before the callers). Bigram maps reach the factorised path of ``bigram.py``; cells maps
and a non-policy behaviour reach the generic ``sequence.py`` kernels and ``softmax.py``.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import JIT_DISABLED

pytestmark = pytest.mark.skipif(JIT_DISABLED, reason="about compiled code and Numba's on-disk cache")

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import onlinepg.kernels as K
    from onlinepg.kernels import bigram as KB, sequence as KS

    out_path, callees_first = sys.argv[1], sys.argv[2] == "1"
    rng = np.random.default_rng(0)
    k, N, d, M, B = 16, 16, 16, 5, 64
    X = rng.choice([-1.0, 1.0], size=(B, d))
    J = rng.integers(M, size=B).astype(np.int64)
    maps = {"bigram": (K.FeatureMap(K.BIGRAM, k, N, 1.0), rng.normal(size=d * k + k * k), X),
            "cells": (K.FeatureMap(K.CELLS, k, N, 1.0), rng.normal(size=M * N * k), np.empty((B, 0)))}
    out = {}

    if callees_first:  # load the per-sequence kernels' own libraries before their batch callers
        fm, w, _ = maps["bigram"]
        ET, rm = KB.bigram_tables(fm, w, d, True)
        st = np.zeros((1, 4), np.uint64); K.seed_streams(1, 0, st)
        y = np.empty((1, N), np.int64); t = np.empty((1, N)); ws = K.sequence_workspace(k); g = np.zeros(w.shape[0])
        KB.sample_sequence_bigram(fm, w, X[0], ET, rm, st[0], y[0], t[0], ws)
        KB.sequence_loglik_bigram(fm, w, X[0], ET, rm, y[0], t[0], ws)
        KB.accumulate_grad_bigram(fm, w, X[0], y[0], t[0], ET, rm, 1.0, g, ws)
        KS.sample_sequence(fm, w, w, X[0], J[0], 0, 0.0, st[0], y[0], t[0], ws)
        KS.sequence_loglik(fm, w, X[0], J[0], y[0], t[0], ws)
        KS.accumulate_grad(fm, w, X[0], J[0], y[0], t[0], t[0], True, 1.0, g, ws)

    for kind, (fm, w, X) in maps.items():
        for beh in (K.POLICY, K.EPS_MIXTURE):
            tag = f"{kind}-{beh}-"
            st = np.zeros((B, 4), np.uint64); K.seed_streams(3, 0, st)
            Y = np.empty((B, N), np.int64); lse = np.empty((B, N)); lp = np.empty(B); lq = np.empty(B)
            K.sample_batch_serial(fm, w, 0.5 * w, X, J, beh, 0.25, st, Y, lse, lp, lq)
            ll = np.empty(B); mn = np.empty(B); tok = np.empty((B, N))
            K.loglik_batch_serial(fm, w, X, J, Y, ll, mn, tok)
            adv = np.where(np.arange(B)[:, None] % 3 == 0, 0.0, 1.0) * np.linspace(-1.0, 1.0, N)
            g = np.zeros(w.shape[0])
            K.grad_batch_serial(fm, w, X, J, Y, adv, lse, beh == K.POLICY, 0.1, g)
            out.update({tag + "Y": Y, tag + "lse": lse, tag + "logp": lp, tag + "logq": lq, tag + "loglik": ll,
                        tag + "min_token": mn, tag + "token_logp": tok, tag + "grad": g})
    np.savez(out_path, **out)
""")


def _run(tmp_path, name, cache, callees_first):
    path = tmp_path / f"{name}.npz"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(path), "1" if callees_first else "0"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    with np.load(path) as f:
        return {key: f[key] for key in f.files}


def test_cold_and_warm_cache_give_identical_bits(tmp_path):
    cache = tmp_path / "numba-cache"
    cold = _run(tmp_path, "cold", cache, callees_first=False)
    assert any(cache.rglob("*.nbc")), "the cold run wrote no cache: the test would compare two cold runs"
    warm = _run(tmp_path, "warm", cache, callees_first=False)
    warm_callees = _run(tmp_path, "warm-callees-first", cache, callees_first=True)
    for other, label in ((warm, "warm cache"), (warm_callees, "warm cache, callees loaded first")):
        differ = [key for key in cold if cold[key].tobytes() != other[key].tobytes()]
        assert not differ, f"{label}: not bit-identical to the cold run: {differ}"
