"""Scaling experiments at --scale small: each runs end to end, writes its outputs, and shows the qualitative
outcome a small run can honestly show."""
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from onlinepg import ConfigError
from onlinepg.experiments import run_experiment


def _outputs_ok(ctx):
    assert (ctx.out / "results.md").stat().st_size > 200
    table = pq.read_table(ctx.out / "results.parquet")
    assert table.num_rows == len(ctx.rows) > 0
    assert ctx.figures and all(f.stat().st_size > 5000 for f in ctx.figures)
    return table


def _agg(ctx, arm, **match):
    rows = [r for r in ctx.rows if r["arm"] == arm and all(r[k] == v for k, v in match.items())]
    return sum(r["queries"] for r in rows) / len(rows)


def test_mistakes(tmp_path):
    ctx = run_experiment("mistakes", "small", tmp_path / "m", seeds=2, log=lambda *_: None)
    _outputs_ok(ctx)
    text = (ctx.out / "results.md").read_text()
    slope = float(text.split("| log expected mistakes vs log k^N/γ² | ")[1].split(" |")[0])
    assert 0.7 < slope < 1.5
    perc = [r for r in ctx.rows if r["arm"] == "perceptron"]
    assert perc and all(r["mistakes_sampled"] <= r["novikoff_bound"] for r in perc)


def test_sgd_lr(tmp_path):
    ctx = run_experiment("sgd-lr", "small", tmp_path / "s", seeds=2, log=lambda *_: None)
    _outputs_ok(ctx)
    by = {(r["arm"], r["N"]): r["scaled_error"] for r in ctx.rows if r["seed"] == 0}
    # the constant rate's error grows with N much faster than the adaptive rate's
    assert by[("constant", 4)] / by[("constant", 1)] > 1.5 * by[("adaptive", 4)] / by[("adaptive", 1)]


def test_queries(tmp_path):
    ctx = run_experiment("queries", "small", tmp_path / "q", seeds=1, log=lambda *_: None)
    _outputs_ok(ctx)
    assert all(r["reached"] for r in ctx.rows)
    for alpha in ctx.params["alpha"]:
        assert _agg(ctx, "mixture_pg", sweep="alpha", alpha=alpha) > _agg(ctx, "best_of_m", sweep="alpha", alpha=alpha)


def test_barrier(tmp_path):
    ctx = run_experiment("barrier", "small", tmp_path / "b", seeds=1, log=lambda *_: None)
    _outputs_ok(ctx)
    N = max(ctx.params["N"])
    assert _agg(ctx, "orm_best_of_m", N=N) > 2 * _agg(ctx, "prm_explore", N=N)


def test_token_lq(tmp_path):
    ctx = run_experiment("token-lq", "small", tmp_path / "t", seeds=1, log=lambda *_: None)
    _outputs_ok(ctx)
    a = max(ctx.params["alpha"])
    prm = _agg(ctx, "prm_explore", alpha=a, base="bottleneck") / _agg(ctx, "prm_explore", alpha=a, base="flat")
    orm = _agg(ctx, "orm_best_of_m", alpha=a, base="bottleneck") / _agg(ctx, "orm_best_of_m", alpha=a, base="flat")
    assert prm > orm
    flat = [r for r in ctx.rows if r["base"] == "flat"][0]
    bott = [r for r in ctx.rows if r["base"] == "bottleneck" and r["alpha"] == flat["alpha"]][0]
    assert flat["Q"] == pytest.approx(bott["Q"], rel=1e-9) and bott["Q_TL"] < flat["Q_TL"]


def test_staircase(tmp_path):
    ctx = run_experiment("staircase", "small", tmp_path / "st", seeds=1, log=lambda *_: None)
    _outputs_ok(ctx)
    orm = [r for r in ctx.rows if r["arm"] == "orm_pg"][0]
    prm = [r for r in ctx.rows if r["arm"] == "prm_explore"][0]
    assert orm["final_test_error"] >= 0.9 * orm["unreachable_mass"]        # held at the unreachable mass
    assert prm["final_test_error"] < 0.5 * orm["final_test_error"]           # the process reward gets past it


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
