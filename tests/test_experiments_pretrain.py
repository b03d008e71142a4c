"""pretrain-tail and pretrain-prm at --scale small: each runs end to end, writes its outputs, and shows what a small
run can honestly show."""
import math

from onlinepg.experiments import run_experiment
from test_experiments import _outputs_ok
from verdicts import verdicts as _verdict


def test_pretrain_tail(tmp_path):
    ctx = run_experiment("pretrain-tail", "small", tmp_path / "pt", log=lambda *_: None)
    _outputs_ok(ctx)
    p = ctx.params
    kN = p["k"] ** p["N"]
    grid = {r["n_factor"]: r for r in ctx.rows if not r["control"]}
    assert set(grid) == set(p["n_factors"])
    # a never-seen tail context keeps the uniform likelihood: the smallest base sits exactly at k^−N
    assert math.isclose(grid[0.1]["Q_ratio"], 1.0, rel_tol=1e-9) and grid[0.1]["unseen"] > p["eps"]
    # outcome-reward post-training pays ~k^N; the structured strategy at most 2 queries a context
    for r in grid.values():
        assert r["orm_queries"] >= 0.5 * kN > 2 * p["M"] >= r["structured_queries"]
    assert all(_verdict(ctx).values())


def test_pretrain_prm(tmp_path):
    ctx = run_experiment("pretrain-prm", "small", tmp_path / "pp", log=lambda *_: None)
    _outputs_ok(ctx)
    sgd = [r for r in ctx.rows if r["arm"] == "sgd"]
    prm = [r for r in ctx.rows if r["arm"] == "pretrain_prm"]
    assert len(sgd) == 1 and sgd[0]["labels_sgd"] > 0
    assert {r["n_factor"] for r in prm} == set(ctx.params["n_factors"])
    for r in prm:   # the cost counts the pre-training labels and every reward query
        assert r["cost"] == r["n"] + r["queries"] and r["ratio"] == r["cost"] / r["labels_sgd"]
    assert set(_verdict(ctx)) == {"prm_not_better"}


def test_ablations(tmp_path):
    ctx = run_experiment("ablations", "small", tmp_path / "ab", log=lambda *_: None)
    _outputs_ok(ctx)
    from onlinepg.experiments.ablations import arms, teacher_arms
    table = {**arms(ctx.params), **teacher_arms(ctx.params)}
    assert {(r["ablation"], r["arm"]) for r in ctx.rows} == {(a, m) for a, g in table.items() for m in g}
    by = {(r["arm"], r["seed"]): r.get("queries") for r in ctx.rows}
    for seed in ctx.seeds:   # ζ = 1 clips every weight to 1: the unweighted mixture run, bit for bit
        assert by["zeta_1", seed] == by["mixture_no_iw", seed] is not None
    assert set(_verdict(ctx)) == {"iw_clip_cost", "reward_no_gain", "baseline_no_gain", "teacher_no_gain"}
    teacher = [r for r in ctx.rows if r["ablation"].startswith("teacher_")]
    assert len(teacher) == 8 * len(ctx.seeds) and all(r["final_test_error"] < r["base_error"] for r in teacher)
