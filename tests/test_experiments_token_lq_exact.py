"""token-lq-exact: the model's pieces against the engine and against direct draws, and every registered check
against the wrong engine it is meant to catch (swapped in at the Python layer: the options an arm or a base runs
with); the right engine PASSes every check at the small scale."""
import math

import numpy as np
import pyarrow.dataset as ds
import pytest

import onlinepg
from onlinepg.experiments import run_experiment, token_lq_exact as tq
from figure_check import assert_figure
from verdicts import verdicts as _verdict


def test_gap_step_is_the_engines_update_from_a_bottleneck_base(tmp_path):
    """One context, every round an update of all positions (best-of-m with m large enough to always find y*): the
    engine's exact p(y*|x) after t updates is the model's Π_i s_i."""
    k, N, easy, alpha = 6, 3, 0.9, 0.2
    onlinepg.run({"task": {"kind": "cells", "k": k, "N": N, "M": 1},
                  "base": {"kind": "bottleneck", "alpha": alpha, "easy": easy, "position": 1},
                  "algo": {"name": "best_of_m", "m": 4000}, "run": {"rounds": 300, "eval_every": 1,
                                                                    "tracked": "none"}},
                 out=tmp_path / "r", progress=False)
    ev = ds.dataset(tmp_path / "r" / "eval").to_table().to_pydict()
    q0 = tq.base_token_probs("bottleneck", alpha, N, easy, 1)
    z = np.log(q0 * (k - 1) / (1 - q0))
    P = []
    for _ in range(max(ev["updates"]) + 1):
        s = 1 / (1 + (k - 1) * np.exp(-z))
        P.append(np.prod(s))
        z = tq.gap_step(z, s, k, np.ones(N, bool))
    np.testing.assert_allclose(1 - np.array(ev["test_error"]), np.array(P)[ev["updates"]], rtol=0, atol=1e-12)


def test_gap_step_on_a_prefix_matches_the_gradient():
    """A step on positions U: the adaptive step along Σ_{i∈U} ∇ log p(y*_i), computed from the softmax rows."""
    k, rng = 5, np.random.default_rng(2)
    z = rng.normal(size=4)
    s = 1 / (1 + (k - 1) * np.exp(-z))
    U = np.array([True, True, False, True])
    g = []                                      # per position: the logits (gap z on y*, 0 elsewhere)
    for zi, ui in zip(z, U):
        logits = np.r_[zi, np.zeros(k - 1)]
        p = np.exp(logits) / np.exp(logits).sum()
        g.append((np.eye(k)[0] - p) * ui)
    g = np.array(g)
    eta = 1 / (4 + 2 * np.sum(g ** 2))
    new = np.r_[[(zi + eta * gi[0]) - (eta * gi[1]) for zi, gi in zip(z, g)]]   # gap after the step
    np.testing.assert_allclose(tq.gap_step(z, s, k, U), new, rtol=1e-13)


def test_search_cost_and_base_profiles():
    q = tq.base_token_probs("bottleneck", 0.03, 4, 0.97, 2)
    assert np.prod(q) == pytest.approx(0.03) and q[2] == pytest.approx(0.03 / 0.97 ** 3)
    assert np.prod(tq.base_token_probs("flat", 0.03, 4, 0.97, 2)) == pytest.approx(0.03)
    assert tq.search_cost(np.array([0.5, 0.5]), 2) == pytest.approx(4.0)


def test_the_right_engine_passes_every_check(tmp_path):
    ctx = run_experiment("token-lq-exact", "small", tmp_path / "ok", log=lambda *_: None)
    assert _verdict(ctx) == {"orm_ratio": True, "prm_ratio": True, "levels": True}
    assert ctx.seeds == [50, 51, 52]
    for f in ctx.figures:
        assert_figure(f, min_size=(400, 250))


def _flat(base, p, N):
    return {"base.kind": "alpha"}


WRONG = {   # (what is swapped, the wrong options, the checks it must fail)
    "bottleneck_is_flat": ("_base_overrides", _flat, {"orm_ratio", "prm_ratio"}),
    # a rate that pays the factor N, 1/(4 + 4N) (here the constant 1/4 is too close to the adaptive rate to tell:
    # near the base ‖g‖² is about 0.3, so the adaptive η is about 0.22)
    "rate_pays_N": ("_arm_overrides", lambda arm: {**tq.ARMS[arm][0], "algo.lr_rule": "constant", "algo.lr": 0.05},
                    {"levels"}),
    "orm_without_exploration": ("_arm_overrides", lambda arm: ({"algo.name": "pg", "algo.behaviour": "policy"}
                                                               if arm == "orm_best_of_m" else tq.ARMS[arm][0]),
                                {"levels"}),
}
# the checks a wrong engine of this file fails (tests/test_checks_have_wrong_engines.py reads it)
CAUGHT = set().union(*(c for *_, c in WRONG.values())) | {"prm_ratio"}


@pytest.mark.parametrize("variant", list(WRONG))
def test_each_wrong_engine_fails_its_checks(tmp_path, monkeypatch, variant):
    name, wrong, caught = WRONG[variant]
    monkeypatch.setattr(tq, name, wrong)
    ctx = run_experiment("token-lq-exact", "small", tmp_path / variant, log=lambda *_: None)
    verdict = _verdict(ctx)
    assert {n for n, ok in verdict.items() if not ok} >= caught, verdict


def test_a_process_arm_that_were_an_outcome_learner_fails_prm_ratio(tmp_path, monkeypatch):
    monkeypatch.setitem(tq.ARMS, "prm_explore", ({"algo.name": "best_of_m"}, "orm_queries"))
    ctx = run_experiment("token-lq-exact", "small", tmp_path / "prm", log=lambda *_: None)
    assert _verdict(ctx)["prm_ratio"] is False


def test_every_check_has_a_wrong_engine():
    named = set().union(*(c for *_, c in WRONG.values())) | {"prm_ratio"}
    spec_checks = {"orm_ratio", "prm_ratio", "levels"}
    assert named == spec_checks
    assert math.isfinite(tq.search_cost(tq.base_token_probs("flat", 0.3, 4, 0.97, 2), 50))
