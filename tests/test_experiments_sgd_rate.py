"""sgd-rate: the exact floor against a brute-force minimisation, and every registered check against the wrong
engine it is meant to catch — the right engine PASSes every check at the small scale, and each wrong variant
(swapped in at the Python layer, the rule an arm runs) FAILs the checks that name it."""
import itertools
import json
import math

import numpy as np
import pytest

from onlinepg.experiments import run_experiment, sgd_rate
from figure_check import assert_figure
from verdicts import verdicts as _verdict


def _brute_floor(k, N, M, eps, steps=400):
    """min 2·Σ a_j over a grid of per-context losses shed a_j ∈ [0, N ln k] with mean k^−N e^{a_j} ≥ 1 − eps."""
    grid = np.linspace(0.0, N * math.log(k), steps)
    best = math.inf
    for a in itertools.product(grid, repeat=M):
        if np.mean(np.exp(np.array(a) - N * math.log(k))) >= 1 - eps - 1e-12:
            best = min(best, 2 * sum(a))
    return best


@pytest.mark.parametrize("k,N,M,eps", [(2, 1, 2, 0.3), (3, 2, 2, 0.2), (4, 1, 3, 0.1), (2, 3, 3, 0.45)])
def test_floor_is_the_minimum_over_per_context_losses(k, N, M, eps):
    F = sgd_rate.floor_rounds(k, N, M, eps)
    brute = _brute_floor(k, N, M, eps, steps=60 if M == 3 else 400)
    step = 2 * N * math.log(k) / (60 if M == 3 else 400)       # the grid's resolution, per context
    assert F <= brute + 1e-9 and brute <= F + 2 * M * step


def test_floor_limits():
    assert sgd_rate.floor_rounds(4, 2, 16, 0.99) == 0.0            # the start already meets ε
    # large N: every finished context costs 2 N ln k and the partial one ln((rest) k^N)
    F = sgd_rate.floor_rounds(4, 16, 16, 0.1)
    q = 4.0 ** -16                                                 # p(y*|x) at w = 0
    assert F == pytest.approx(2 * (14 * 16 * math.log(4) + math.log(0.4 - q) + 16 * math.log(4)), rel=1e-12)


WRONG = {   # the wrong engine each check must catch: the rule an arm would really run
    "adaptive_is_quarter": (lambda arm, N: ("constant", 0.25), {"floor", "shared_weights_growth"}),
    "quarter_is_adaptive": (lambda arm, N: ("adaptive", 1.0), {"control", "shared_weights_growth"}),
    "adaptive_pays_N": (lambda arm, N: ("constant", 1.0 / (4 + 4 * N)), {"cells_flat", "shared_weights_growth"}),
}
# the checks a wrong engine of this file fails (tests/test_checks_have_wrong_engines.py reads it)
CAUGHT = set().union(*(caught for _, caught in WRONG.values()))
WRONG_ARM = {"adaptive_is_quarter": "adaptive", "quarter_is_adaptive": "quarter", "adaptive_pays_N": "adaptive"}


def test_the_right_engine_passes_every_check(tmp_path):
    ctx = run_experiment("sgd-rate", "small", tmp_path / "ok", log=lambda *_: None)
    assert _verdict(ctx) == {"floor": True, "control": True, "shared_weights_growth": True, "cells_flat": True}
    assert ctx.seeds == [50, 51]                    # the small scale's own seeds, not the confirmatory run's
    for f in ctx.figures:
        assert_figure(f, min_size=(400, 250))
    # every run reached ε, and its floor is the formula's for its own M
    for r in ctx.rows:
        assert r["rounds_to_eps"] is not None
        assert r["floor"] == sgd_rate.floor_rounds(ctx.params["k"], r["N"], r["M"], ctx.params["eps"])
    checks = {c["name"] for c in json.loads((ctx.out / "checks.json").read_text())["checks"]}
    named = set().union(*(caught for _, caught in WRONG.values()))
    assert checks == named, "every registered check must have a wrong engine that fails it"


@pytest.mark.parametrize("variant", list(WRONG))
def test_each_wrong_engine_fails_its_checks(tmp_path, monkeypatch, variant):
    wrong, caught = WRONG[variant]
    right = sgd_rate._rate
    monkeypatch.setattr(sgd_rate, "_rate", lambda arm, N: wrong(arm, N) if arm == WRONG_ARM[variant]
                        else right(arm, N))
    ctx = run_experiment("sgd-rate", "small", tmp_path / variant, seeds=1, log=lambda *_: None)
    verdict = _verdict(ctx)
    assert {name for name, ok in verdict.items() if not ok} >= caught, verdict
