"""Shared fixtures for the kernel tests: the grid of small feature-map cases and a thread-count switch.

Every array handed to a kernel is float64 / int64 / uint64 and C-contiguous, and every feature map is
``K.FeatureMap(int, int, int, float)``, so each kernel compiles (or loads from cache) one signature only.
"""
import contextlib
import math
import os
from types import SimpleNamespace

# The bit-identity tests switch between 1 and 2 threads; make 2 available even on a one-core runner.
if (os.cpu_count() or 1) < 2:
    os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import onlinepg.kernels as K  # noqa: E402
from reference import Model  # noqa: E402

JIT_DISABLED = bool(numba.config.DISABLE_JIT)


def pytest_configure(config):
    if JIT_DISABLED:
        # As plain Python the RNG's uint64 arithmetic runs on numpy scalars, which warn when they wrap;
        # wrapping modulo 2**64 is exactly what xoshiro/SplitMix64 intend (checked bit for bit in the tests).
        config.addinivalue_line("filterwarnings", "ignore:overflow encountered in scalar:RuntimeWarning")


KIND = {"bigram": K.BIGRAM, "cells": K.CELLS}


def build_case(kind, k, N, tscale=1.0, d=3, M=3, seed=0, wscale=1.0):
    """A feature map, policy weights w, base weights w0 and one context, plus the reference ``Model``."""
    rng = np.random.default_rng(seed)
    if kind == "bigram":
        model = Model("bigram", k, N, float(tscale), d=d, M=0)
        x = np.ascontiguousarray(rng.normal(size=d), dtype=np.float64)
        j = 3  # ignored by bigram: a non-zero id checks that it is
    else:
        model = Model("cells", k, N, 1.0, d=0, M=M)
        x = np.empty(0, dtype=np.float64)
        j = int(rng.integers(M))
    w = wscale * rng.normal(size=model.D)
    w0 = wscale * rng.normal(size=model.D)
    fm = K.FeatureMap(int(KIND[kind]), int(k), int(N), float(model.tscale))
    return SimpleNamespace(kind=kind, k=k, N=N, d=model.d, M=model.M, model=model, fm=fm,
                           w=w, w0=w0, x=x, j=j, seed=seed)


def _case_grid():
    params = []
    for k in (2, 3, 7):
        for N in (1, 2, 5):
            for ts in (1.0, 1.0 / math.sqrt(2.0)):
                params.append(pytest.param(("bigram", k, N, ts), id=f"bigram-k{k}-N{N}-ts{ts:.3f}"))
            params.append(pytest.param(("cells", k, N, 1.0), id=f"cells-k{k}-N{N}"))
    return params


CASE_GRID = _case_grid()


@pytest.fixture(params=CASE_GRID)
def case(request):
    kind, k, N, ts = request.param
    return build_case(kind, k, N, ts, seed=1000 + 10 * k + N)


@pytest.fixture
def make_case():
    return build_case


@pytest.fixture
def scratch():
    """Factory of n float64[k] scratch arrays."""
    def make(k, n):
        return [np.empty(k, dtype=np.float64) for _ in range(n)]
    return make


@pytest.fixture
def seeded_state():
    def make(seed, stream=0):
        s = np.zeros(4, dtype=np.uint64)
        K.seed_stream(seed, stream, s)
        return s
    return make


@pytest.fixture
def num_threads():
    """``with num_threads(n): ...`` runs the block with n Numba threads and restores the previous count."""
    before = numba.get_num_threads()

    @contextlib.contextmanager
    def use(n):
        if n > numba.config.NUMBA_NUM_THREADS:
            pytest.skip(f"needs {n} Numba threads, NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}")
        old = numba.get_num_threads()
        numba.set_num_threads(n)
        try:
            yield
        finally:
            numba.set_num_threads(old)

    yield use
    numba.set_num_threads(before)
