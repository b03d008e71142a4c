"""The lower-bound and per-sample experiments at --scale small, and the helpers they compute predictions with."""
import json

import numpy as np
import pytest

from onlinepg.experiments import run_experiment
from test_experiments import _outputs_ok


def _verdicts(ctx, names):
    pre = [c["name"] for c in json.loads((ctx.out / "checks.json").read_text())["checks"]]
    assert pre == names
    verdict = {c["name"]: c for c in json.loads((ctx.out / "verdict.json").read_text())["checks"]}
    assert set(verdict) == set(names) and all(isinstance(c["passed"], bool) for c in verdict.values())
    text = (ctx.out / "results.md").read_text()
    assert sum(line.startswith(("- PASS", "- FAIL")) for line in text.split("## Verdict")[1].splitlines()) == len(names)
    return {n: c["passed"] for n, c in verdict.items()}


def test_search_floor_is_the_expected_mistakes_of_search_without_replacement():
    from onlinepg.experiments.mistakes_lower_bound import search_floor, search_mistakes
    K = 6
    visits = np.array([0, 1, 3, 6, 50])
    # brute force: the wrong guesses before y* are uniform on 0..K−1; a context visited n times pays min(n, U)
    exact = sum(np.mean([min(n, u) for u in range(K)]) for n in visits)
    assert search_floor(visits, K) == pytest.approx(exact)
    assert search_floor([10**6] * 4, K) == pytest.approx(4 * (K - 1) / 2)        # saturated: M(K − 1)/2
    draws = [search_mistakes(visits, K, np.random.default_rng(s)) for s in range(4000)]
    assert np.mean(draws) == pytest.approx(exact, rel=0.03)


def test_mistakes_lower_bound(tmp_path):
    ctx = run_experiment("mistakes-lower-bound", "small", tmp_path / "mlb", log=lambda *_: None)
    _outputs_ok(ctx)
    verdict = _verdicts(ctx, ["floor", "upper"])
    assert verdict["floor"]
    rows = ctx.rows
    assert len({r["rounds"] for r in rows}) == 1                     # one horizon for every instance
    for r in rows:
        K, M = r["k"] ** r["N"], r["M"]
        assert r["floor"] == pytest.approx(M * (K - 1) / 2, rel=1e-9)   # the horizon saturates the floor
        if r["arm"] in ("pg_uniform", "pg_on_policy", "best_of_m", "control"):
            assert r["mistakes"] >= r["floor"]
    ctl = [r for r in rows if r["arm"] == "control"]
    assert all(r["mistakes"] == pytest.approx(r["rounds"] * (1 - r["k"] ** -r["N"]), rel=0.05) for r in ctl)


def test_staircase_step_targets_sit_on_the_steps_of_the_base_lq():
    import math
    from onlinepg import CellsTask, staircase_base
    from onlinepg.experiments.orm_lower_bound import required_finds, step_targets
    from onlinepg.lq import evaluate_likelihoods, likelihood_quantile
    task = CellsTask(8, 5, M=48, seed=3)
    alphas, fractions = [1e-2, 1e-3, 1e-1], [1.0, 2.0, 1.0]
    base, _ = staircase_base(task, alphas, fractions)
    lik = evaluate_likelihoods(base, task.all_contexts())
    targets = step_targets(alphas, fractions, task.M)
    assert [a for _, a, _ in targets] == sorted(alphas)
    assert [S for _, _, S in targets] == pytest.approx([0.5, 0.75, 1.0])
    for eps, alpha, S in targets:
        assert math.exp(likelihood_quantile(lik.loglik, eps)) == pytest.approx(alpha, rel=1e-9)
        # the contexts a learner must have found: the error of the rest alone would exceed ε with one fewer
        n = required_finds(task.M, eps, alpha, S)
        assert (task.M * S - math.ceil(n) + 1) * (1 - alpha) / task.M > eps


def test_orm_lower_bound(tmp_path):
    ctx = run_experiment("orm-lower-bound", "small", tmp_path / "olb", log=lambda *_: None)
    _outputs_ok(ctx)
    _verdicts(ctx, ["slope", "floor"])
    bom = sorted((r for r in ctx.rows if r["arm"] == "best_of_m"), key=lambda r: r["Q"])
    assert all(r["reached"] for r in ctx.rows)
    # queries fall as the step's likelihood rises, and never below the floor n(ε)/Q_q(ε)
    assert all(a["queries"] > b["queries"] for a, b in zip(bom, bom[1:]))
    assert all(r["queries"] >= r["floor"] for r in bom)


def test_per_sample_helpers():
    from onlinepg.experiments.per_sample import first_group_round, group_queries, random_iterate_gap
    rounds = np.array([0, 2, 6])
    lik = np.array([[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]])
    # the likelihood is held between evaluations: rounds 0–1 at the first row, 2–5 at the second
    assert random_iterate_gap(rounds, lik, np.array([True, False]))[1:] == pytest.approx([1.0, 1 - 4 / 6])
    assert random_iterate_gap(rounds, lik, np.array([True, True]))[2] == pytest.approx(1 - (2 * 0.25 + 4 * 0.75) / 6)
    assert first_group_round(rounds, lik, np.array([False, True]), 0.1) == 6
    assert first_group_round(rounds, lik, np.array([False, True]), 0.0) == 6
    assert first_group_round(rounds, lik * 0.5, np.array([True, True]), 0.1) is None
    cum = group_queries(np.array([0, 1, 0]), np.array([3.0, 1.0, 2.0]), np.array([1, 0]), 2, [0, 1, 2, 3])
    assert cum.tolist() == [[0, 0], [0, 3], [1, 3], [1, 5]]
    assert group_queries(np.array([0, 1, 0]), 1.0, np.array([1, 0]), 2, [3]).tolist() == [[1, 2]]


def test_per_sample(tmp_path):
    ctx = run_experiment("per-sample", "small", tmp_path / "ps", log=lambda *_: None)
    _outputs_ok(ctx)
    verdict = _verdicts(ctx, ["per_sample", "best_of_m_additive", "mixture_pg_multiplicative"])
    assert verdict["per_sample"]
    gaps = {(r["arm"], r["alpha"]): r for r in ctx.rows if r["eps"] is None}
    for a in ctx.params["alphas"]:
        # the learner closes the gap on every group; the control keeps it at about 1 − E[α | α_g ≥ α]
        assert gaps["best_of_m", a]["gap_final"] < 0.1 < 0.3 < gaps["control", a]["gap_final"]
