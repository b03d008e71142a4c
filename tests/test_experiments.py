"""Scaling experiments at --scale small: each runs end to end, writes its outputs, and shows the qualitative
outcome a small run can honestly show."""
import json
import math
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from onlinepg import ConfigError
from onlinepg.experiments import run_experiment
from figure_check import assert_figure


def _outputs_ok(ctx):
    text = (ctx.out / "results.md").read_text()
    assert text.startswith("# ") and "## What came out" in text and "## Wall time" in text
    table = pq.read_table(ctx.out / "results.parquet")
    assert table.num_rows == len(ctx.rows) > 0
    assert ctx.figures
    for f in ctx.figures:
        assert_figure(f, min_size=(400, 250))
        assert f"![{f.stem}](figures/{f.name})" in text
    return table


def _agg(ctx, arm, **match):
    rows = [r for r in ctx.rows if r["arm"] == arm and all(r[k] == v for k, v in match.items())]
    return sum(r["queries"] for r in rows) / len(rows)


def test_mistakes(tmp_path):
    from onlinepg.experiments.mistakes import horizon
    ctx = run_experiment("mistakes", "small", tmp_path / "m", seeds=1, log=lambda *_: None)
    _outputs_ok(ctx)
    # one horizon for every instance, at least horizon_factor × the largest k^N/γ² (exact γ)
    H = horizon(ctx.params)
    assert {r["rounds"] for r in ctx.rows} == {H}
    assert H >= ctx.params["horizon_factor"] * max(r["k_N_over_gamma2"] for r in ctx.rows)
    assert all(r["k_N_over_gamma2"] == pytest.approx(r["k"] ** r["N"] / r["gamma_exact"] ** 2) for r in ctx.rows)
    # the checks were registered before the runs, and each has a verdict
    pre = json.loads((ctx.out / "checks.json").read_text())
    names = [c["name"] for c in pre["checks"]]
    assert names == ["flattening", "slope", "bounds"]
    verdict = {c["name"]: c for c in json.loads((ctx.out / "verdict.json").read_text())["checks"]}
    assert set(verdict) == set(names) and all(isinstance(c["passed"], bool) for c in verdict.values())
    text = (ctx.out / "results.md").read_text()
    assert sum(line.startswith(("- PASS", "- FAIL")) for line in text.split("## Verdict")[1].splitlines()) == 3
    # the learner learns and the control does not: its mistakes grow linearly in t, the learner's do not
    ctl = [r for r in ctx.rows if r["arm"] == "control"]
    pg = [r for r in ctx.rows if r["arm"] == "pg_uniform"]
    assert all(abs(r["second_half_share"] - 0.5) < 0.02 for r in ctl)
    assert all(r["second_half_share"] < 0.3 and r["final_test_error"] < 0.1 for r in pg)
    assert verdict["slope"]["passed"] and verdict["bounds"]["passed"]
    perc = [r for r in ctx.rows if r["arm"] == "perceptron"]
    assert perc and all(r["mistakes_sampled"] <= r["novikoff_bound"] for r in perc)


def test_checks_are_registered_before_the_first_run(tmp_path):
    from onlinepg.experiments.common import ExperimentRun
    ctx = ExperimentRun("mistakes", "small", tmp_path / "c", log=lambda *_: None)
    ctx.predict("a", "q", "1", "± 0", "c")
    ctx._preregister()
    with pytest.raises(RuntimeError, match="after the first run"):
        ctx.predict("b", "q", "1", "± 0", "c")


def test_sgd_lr(tmp_path):
    ctx = run_experiment("sgd-lr", "small", tmp_path / "s", seeds=2, log=lambda *_: None)
    _outputs_ok(ctx)
    by = {(r["arm"], r["N"]): r["test_error"] for r in ctx.rows if r["seed"] == 0}
    # the prediction from the rates used: error ratio constant(1/(4+4N)) / adaptive ≈ 1 + N, control ≈ 1
    for N in ctx.params["N"]:
        assert by["constant", N] / by["adaptive", N] == pytest.approx(1 + N, rel=0.15)
        assert by["limit", N] / by["adaptive", N] == pytest.approx(1.0, rel=0.1)
    verdict = {c["name"]: c["passed"] for c in json.loads((ctx.out / "verdict.json").read_text())["checks"]}
    assert verdict == {"ratio_slope": True, "adaptive_flat": True, "limit_control": True}


def test_queries(tmp_path):
    ctx = run_experiment("queries", "small", tmp_path / "q", seeds=1, log=lambda *_: None)
    _outputs_ok(ctx)
    assert all(r["reached"] for r in ctx.rows)
    cells = {(r["alpha"], r["eps"]) for r in ctx.rows}
    assert cells == {(a, e) for a in ctx.params["alpha"] for e in ctx.params["eps"]}    # the whole α × ε grid
    for alpha, eps in cells:
        assert _agg(ctx, "mixture_pg", alpha=alpha, eps=eps) > _agg(ctx, "best_of_m", alpha=alpha, eps=eps)
    verdict = {c["name"]: c for c in json.loads((ctx.out / "verdict.json").read_text())["checks"]}
    assert set(verdict) == {"best_of_m_additive", "mixture_pg_multiplicative"}
    assert verdict["mixture_pg_multiplicative"]["passed"]


def test_query_laws_are_told_apart():
    from onlinepg.experiments.queries import fit_laws
    a, e = np.meshgrid([0.3, 0.1, 0.03, 0.01], [0.3, 0.1, 0.03, 0.01])
    a, e = a.ravel(), e.ravel()
    additive = fit_laws(a, e, 50 / a + 20 / e + 5)
    assert additive["additive"]["rss"] < 1e-10 and additive["multiplicative"]["aic"] > additive["additive"]["aic"] + 4
    assert additive["additive"]["params"]["a"] == pytest.approx(50, rel=1e-5)
    mult = fit_laws(a, e, 7 / (a * e))
    assert mult["multiplicative"]["params"]["c"] == pytest.approx(7) and mult["multiplicative"]["rss"] < 1e-20
    assert mult["additive"]["aic"] > mult["multiplicative"]["aic"] + 4


def test_barrier(tmp_path):
    ctx = run_experiment("barrier", "small", tmp_path / "b", seeds=1, log=lambda *_: None)
    _outputs_ok(ctx)
    N = max(ctx.params["N"])
    assert _agg(ctx, "orm_best_of_m", N=N) > 2 * _agg(ctx, "prm_explore", N=N)
    # the reference rate is the actual mixture's, ½(p^N + k^−N), and p_tok > 1/k makes its base half dominate
    from onlinepg.experiments.barrier import mixture_mass, predicted_slope
    k, p_tok = ctx.config["task"]["k"], ctx.params["p_tok"]
    assert p_tok > 1 / k and mixture_mass(0.3, 3, 2) == pytest.approx(0.5 * (0.09 + 1 / 9))
    assert abs(predicted_slope(p_tok, k, ctx.params["N"]) - math.log(1 / p_tok)) < 0.1
    assert {r["arm"] for r in ctx.rows} == {"orm_best_of_m", "prm_explore", "orm_on_policy", "prm_on_policy"}
    verdict = {c["name"]: c["passed"] for c in json.loads((ctx.out / "verdict.json").read_text())["checks"]}
    assert verdict == {"orm_exponential": True, "prm_polynomial": True}


def test_barrier_refuses_a_mixture_whose_uniform_half_sets_the_rate(tmp_path):
    with pytest.raises(ConfigError, match="p_tok must exceed 1/k"):
        run_experiment("barrier", "small", tmp_path / "b", sets=["p_tok=0.1"], log=lambda *_: None)


def test_token_lq(tmp_path):
    ctx = run_experiment("token-lq", "small", tmp_path / "t", seeds=1, log=lambda *_: None)
    _outputs_ok(ctx)
    a = min(ctx.params["alpha"])
    prm = _agg(ctx, "prm_explore", alpha=a, base="bottleneck") / _agg(ctx, "prm_explore", alpha=a, base="flat")
    orm = _agg(ctx, "orm_best_of_m", alpha=a, base="bottleneck") / _agg(ctx, "orm_best_of_m", alpha=a, base="flat")
    assert prm > orm
    k, N, easy = ctx.config["task"]["k"], ctx.config["task"]["N"], ctx.params["easy"]
    for flat in (r for r in ctx.rows if r["base"] == "flat"):
        bott = [r for r in ctx.rows if r["base"] == "bottleneck" and r["alpha"] == flat["alpha"]][0]
        assert flat["Q"] == pytest.approx(bott["Q"], rel=1e-9)
        assert flat["Q_TL"] == pytest.approx(flat["alpha"] ** (1 / N), rel=1e-9)
        # the hard token sits above 1/k, so the uniform half of the exploration does not cap the PRM cost
        assert bott["Q_TL"] == pytest.approx(flat["alpha"] / easy ** (N - 1), rel=1e-9) and bott["Q_TL"] > 1 / k
    verdict = {c["name"]: c for c in json.loads((ctx.out / "verdict.json").read_text())["checks"]}
    assert set(verdict) == {"orm_same_alpha", "prm_follows_qtl"} and verdict["prm_follows_qtl"]["passed"]
    with pytest.raises(ConfigError, match="hard-token probability"):
        run_experiment("token-lq", "small", tmp_path / "t2", sets=["alpha=[0.01]"], log=lambda *_: None)


def test_staircase(tmp_path):
    ctx = run_experiment("staircase", "small", tmp_path / "st", seeds=1, log=lambda *_: None)
    _outputs_ok(ctx)
    from onlinepg.experiments.staircase import bands
    p = ctx.params
    assert {r["arm"] for r in ctx.rows} == {"mixture", "prm_explore"} | {f"best_of_m_{m}" for m in p["m"]}
    # the rule has the 1/γ² factor: budget T = h/γ² queries in all, groups unsolved while α_g·h ≪ 1
    assert bands([0.3, 1e-2, 1e-4], [0.25, 0.25, 0.5], 100, 5.0) == (0.5, 0.75)
    h_max = max(p["horizons"])
    for r in ctx.rows:
        assert r["queries"] >= r["queries_budget"] and r["test_error"] is not None
        if r["arm"] != "prm_explore":
            assert r["test_error"] >= r["L"] - p["tol"]                     # held at the unreachable mass
    prm = next(r for r in ctx.rows if r["arm"] == "prm_explore" and r["h"] == h_max)
    assert prm["test_error"] < prm["L"] - p["tol"]                          # the process reward gets past it
    verdict = {c["name"]: c for c in json.loads((ctx.out / "verdict.json").read_text())["checks"]}
    assert verdict["orm_floor"]["passed"] and verdict["prm_passes_plateau"]["passed"]
    assert "best_of_m_matches" in verdict


def test_cli_and_bad_input(tmp_path):
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "experiment", "sgd-lr", "--scale", "small",
                          "--seeds", "1", "--set", "T=500", "--out", str(tmp_path / "c")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "results:" in res.stdout and (tmp_path / "c" / "results.parquet").exists()
    with pytest.raises(ConfigError, match="unknown parameter 'Tee'"):
        run_experiment("sgd-lr", "small", tmp_path / "x", sets=["Tee=5"])
    with pytest.raises(ConfigError, match="algo.lr must be"):
        run_experiment("sgd-lr", "small", tmp_path / "y", sets=["algo.lr=-1"])
    with pytest.raises(ConfigError, match="experiment must be one of"):
        run_experiment("nope", "small", tmp_path / "z")


def test_bandit_n1(tmp_path):
    ctx = run_experiment("bandit-n1", "small", tmp_path / "b", log=lambda *_: None)
    _outputs_ok(ctx)
    rows = {(r["stream"], r["arm"]): r for r in ctx.rows}
    assert {a for _, a in rows} == {"pg_uniform", "pg_on_policy", "banditron", "perceptron", "vw_cbify"}
    orth = {a: r for (s, a), r in rows.items() if s == "orthogonal"}
    # the full-information perceptron stays within Novikoff's 2/γ² (exact γ); the bandit learners pay more
    assert orth["perceptron"]["mistakes"] <= 2 / ctx.params["gamma"] ** 2 < orth["banditron"]["mistakes"]
    # PG's mistakes flatten; the Banditron's constant exploration keeps erring on about ε(1 − 1/k) of the rounds
    assert orth["pg_uniform"]["second_half_share"] < 0.2 < 0.3 < orth["banditron"]["second_half_share"]
    verdict = {c["name"]: c["passed"] for c in json.loads((ctx.out / "verdict.json").read_text())["checks"]}
    assert verdict == {"perceptron_novikoff": True, "pg_flattens": True}


def test_predictions_read_the_config_the_runs_use(tmp_path):
    """An experiment's predictions read ``ctx.shared``: its shared engine config with --set SECTION.KEY applied,
    the same values its runs get (a prediction from the spec's raw table would ignore the --set)."""
    from onlinepg.experiments.common import ExperimentRun
    ctx = ExperimentRun("barrier-zero", "small", tmp_path / "x", sets=["task.gamma=0.25", "task.k=6"],
                        log=lambda *_: None)
    assert (ctx.shared.task.gamma, ctx.shared.task.k) == (0.25, 6)
    assert ctx.config["task"]["k"] == 8          # the spec's own table is unchanged
