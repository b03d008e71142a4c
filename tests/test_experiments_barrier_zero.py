"""barrier-zero: the exact model against the engine, and every registered check against the wrong engine it is
meant to catch — the right engine PASSes every check at the small scale, and each wrong variant (swapped in at the
Python layer: the options an arm runs with) FAILs the checks that name it."""
import json

import numpy as np
import pyarrow.dataset as ds
import pytest

import onlinepg
from onlinepg.experiments import barrier_zero, run_experiment
from figure_check import assert_figure
from verdicts import verdicts as _verdict


@pytest.mark.parametrize("algo", [{"name": "best_of_m", "m": 64}, {"name": "pg", "behaviour": "policy"}])
@pytest.mark.parametrize("k,N", [(4, 3), (8, 2)])
def test_the_model_recursion_is_the_engine_from_zero(tmp_path, algo, k, N):
    """One context (M = 1): after t updates the engine's exact p(y*|x) = 1 − test error is the model's P_t."""
    onlinepg.run({"task": {"kind": "cells", "k": k, "N": N, "M": 1}, "base": {"kind": "alpha", "alpha": 0.3 ** N},
                  "algo": {**algo, "init": "zero"}, "run": {"rounds": 600, "eval_every": 1, "tracked": "none"}},
                 out=tmp_path / "r", progress=False)
    ev = ds.dataset(tmp_path / "r" / "eval").to_table().to_pydict()
    P = barrier_zero.likelihood_after_updates(k, N, 1e-6)
    t = np.array(ev["updates"])
    assert t.max() > 20 and t.max() < len(P)
    np.testing.assert_allclose(1.0 - np.array(ev["test_error"]), P[t], rtol=0, atol=1e-12)


def test_visit_costs_match_a_direct_draw():
    """best-of-m's σ and expected queries of a successful visit, against a direct simulation of the visit."""
    rng = np.random.default_rng(3)
    P, a, m = np.array([0.05]), 0.02, 40
    sigma, fail, succ = barrier_zero.visit_costs("best_of_m", P, a, m)
    n = 400000
    policy_hit = rng.random(n) < P[0]
    K = rng.geometric(a, n)
    hit = policy_hit | (K <= m)
    cost = np.where(policy_hit, 1, 1 + np.minimum(K, m))
    assert sigma[0] == pytest.approx(hit.mean(), abs=3e-3)
    assert succ[0] == pytest.approx(cost[hit].mean(), rel=1e-2)
    assert fail[0] == 1 + m and np.all(cost[~hit] == 1 + m)


def test_the_model_on_policy_matches_a_direct_round_by_round_simulation():
    """The Poisson clock is the model's one approximation: against rounds drawn one by one (uniform contexts)."""
    k, N, M, eps = 4, 2, 5, 0.1
    P = barrier_zero.likelihood_after_updates(k, N, eps / 10)
    rng = np.random.default_rng(11)
    direct = []
    for _ in range(300):
        state, t = np.zeros(M, int), 0
        while 1.0 - P[np.minimum(state, len(P) - 1)].mean() > eps:
            t += 1
            j = rng.integers(M)
            if rng.random() < P[min(state[j], len(P) - 1)]:
                state[j] += 1
        direct.append(t)
    model = barrier_zero.simulate("onpolicy", k, N, M, 0.5, 1, eps, 1, 4000, 5)
    assert np.mean(np.log(direct)) == pytest.approx(np.mean(np.log(model)), abs=0.08)


def _no_init(arm, N):
    return dict(barrier_zero.ARMS[arm][0])


WRONG = {   # the wrong engine each check must catch, as the options an arm would really run with
    "init_ignored": ({"onpolicy", "best_of_m"}, _no_init, {"onpolicy_kN", "levels"}),
    "exploration_ignores_base": ({"best_of_m"}, lambda arm, N: {**_no_init(arm, N), "algo.init": "zero",
                                                                "base.alpha": 8.0 ** -N},
                                 {"best_of_m_mixture_rate", "levels"}),
    "on_policy_explores": ({"onpolicy"}, lambda arm, N: {"algo.name": "pg", "algo.behaviour": "mixture",
                                                         "algo.init": "zero"}, {"levels"}),
    "constant_rate": ({"onpolicy", "best_of_m"}, lambda arm, N: {**_no_init(arm, N), "algo.init": "zero",
                                                               "algo.lr_rule": "constant", "algo.lr": 0.25},
                      {"levels"}),
}
# the checks a wrong engine of this file fails (tests/test_checks_have_wrong_engines.py reads it)
CAUGHT = set().union(*(caught for *_, caught in WRONG.values())) | {"prm_polynomial"}
# One seed where the wrong engine fails by a wide margin even against a one-seed mean's band (√3 wider than the
# three seeds'): measured, init_ignored's on-policy level at N = 4 is 3.9 bands off, exploration_ignores_base's
# best-of-m level 8.2, on_policy_explores's on-policy level at N = 1 2.7, the outcome-learning PRM's log-log slope
# 2.35 against the limit 1.25. constant_rate misses by less (1.16 bands at one seed) and keeps the three seeds.
SEEDS = {"init_ignored": 1, "exploration_ignores_base": 1, "on_policy_explores": 1, "prm_as_outcome": 1}


def test_the_right_engine_passes_every_check(tmp_path):
    ctx = run_experiment("barrier-zero", "small", tmp_path / "ok", log=lambda *_: None)
    assert _verdict(ctx) == {"onpolicy_kN": True, "best_of_m_mixture_rate": True, "levels": True,
                             "prm_polynomial": True}
    assert ctx.seeds == [50, 51, 52]
    for f in ctx.figures:
        assert_figure(f, min_size=(400, 250))
    assert all(r["reached"] for r in ctx.rows)
    checks = {c["name"] for c in json.loads((ctx.out / "checks.json").read_text())["checks"]}
    named = set().union(*(caught for *_, caught in WRONG.values())) | {"prm_polynomial"}
    assert checks == named, "every registered check must have a wrong engine that fails it"


@pytest.mark.parametrize("variant", list(WRONG))
def test_each_wrong_engine_fails_its_checks(tmp_path, monkeypatch, variant):
    arms, wrong, caught = WRONG[variant]
    right = barrier_zero._arm_overrides
    monkeypatch.setattr(barrier_zero, "_arm_overrides", lambda arm, N: wrong(arm, N) if arm in arms
                        else right(arm, N))
    ctx = run_experiment("barrier-zero", "small", tmp_path / variant, seeds=SEEDS.get(variant), log=lambda *_: None)
    verdict = _verdict(ctx)
    assert {name for name, ok in verdict.items() if not ok} >= caught, verdict


def test_a_process_arm_that_were_an_outcome_learner_fails_prm_polynomial(tmp_path, monkeypatch):
    monkeypatch.setitem(barrier_zero.ARMS, "prm", ({"algo.name": "best_of_m"}, "orm_queries"))
    ctx = run_experiment("barrier-zero", "small", tmp_path / "prm", seeds=SEEDS["prm_as_outcome"], log=lambda *_: None)
    assert _verdict(ctx)["prm_polynomial"] is False


def test_refuses_a_mixture_whose_uniform_half_sets_the_rate(tmp_path):
    with pytest.raises(onlinepg.ConfigError, match="p_tok must exceed 1/k"):
        run_experiment("barrier-zero", "small", tmp_path / "b", sets=["p_tok=0.1"], log=lambda *_: None)
