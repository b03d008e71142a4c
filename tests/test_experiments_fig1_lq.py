"""The paper-figure experiments fig1 and lq-curves at --scale small: each runs end to end through
``run_experiment``, writes results.parquet / results.md / figures, and shows the qualitative outcome a small run
can honestly show."""
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from onlinepg.experiments import run_experiment
from onlinepg.weights import load_policy
from onlinepg.trace import read_table
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


@pytest.fixture(scope="module")
def fig1(tmp_path_factory):
    return run_experiment("fig1", "small", tmp_path_factory.mktemp("fig1") / "out", log=lambda *_: None)


@pytest.fixture(scope="module")
def lq_curves(tmp_path_factory):
    return run_experiment("lq-curves", "small", tmp_path_factory.mktemp("lq") / "out", log=lambda *_: None)


def test_fig1_outputs(fig1):
    table = _outputs_ok(fig1)
    assert set(table.column("arm").to_pylist()) == {"orm", "prm"}
    text = (fig1.out / "results.md").read_text()
    assert "## What came out" in text and "![fig1](figures/fig1.png)" in text
    # the base ran once, as its own stage, and both arms loaded exactly those weights
    labels = [label for label, _ in fig1.stages]
    assert sum(label.startswith("base") for label in labels) == 1
    base = load_policy(fig1.out / "base" / "seed=0" / "base.npz")
    for arm in ("orm", "prm"):
        run = fig1.out / "runs" / arm / "seed=0"
        assert np.array_equal(load_policy(run / "base.npz").w, base.w)
        assert json.loads((run / "summary.json").read_text())["rounds"] == fig1.params["steps"]
        tracked = read_table(run / "tracked").to_pydict()
        # every centre tracked at every step (eval_every = 1), round 0 included
        assert len(tracked["round"]) == fig1.params["centres"] * (fig1.params["steps"] + 1)
        # the test error on the authors' schedule: every eval_every steps, plus log-spaced early steps
        p = fig1.params
        logs = {int(p["steps"] ** (i / p["eval_log_points"])) for i in range(1, p["eval_log_points"] + 1)}
        assert read_table(run / "eval").column("round").to_pylist() == sorted(
            {0, p["steps"], *range(0, p["steps"] + 1, p["eval_every"]), *logs})


def test_fig1_budget_line_is_per_centre_and_verdicts_are_reported(fig1):
    p = fig1.params
    run = fig1.out / "runs" / "orm" / "seed=0"
    base = read_table(run / "tracked").to_pydict()
    base_ll = np.array([ll for r, ll in zip(base["round"], base["loglik_star"]) if r == 0])
    per_centre = p["steps"] * p["batch"] / p["centres"]
    orm = next(r for r in fig1.rows if r["arm"] == "orm")
    assert orm["below_1_over_T_count"] == int((base_ll < -math.log(per_centre)).sum())
    verdict = {c["name"]: c for c in json.loads((fig1.out / "verdict.json").read_text())["checks"]}
    assert set(verdict) == {"orm_stuck_below_budget", "prm_lifts_off_support", "prm_beats_orm"}
    assert all(isinstance(c["passed"], bool) and c["measured"] != "not evaluated" for c in verdict.values())
    text = (fig1.out / "results.md").read_text()
    assert "| seed | off_support_count | below_budget_test_mass | orm_plateau | prm_final | orm_minus_prm |" in text


def test_fig1_prm_beats_orm_on_the_worst_centres(fig1):
    by = {r["arm"]: r for r in fig1.rows}
    orm, prm = by["orm"], by["prm"]
    assert prm["final_test_error"] < orm["final_test_error"]
    # the worst quarter of centres by base likelihood: PRM ends with more likelihood on them than ORM
    assert prm["worst_quarter_mean_likelihood_end"] > orm["worst_quarter_mean_likelihood_end"]
    # the PRM's test error is still falling over the last stretch of post-training
    steps = fig1.params["report_steps"]
    assert prm[f"test_error_at_{steps[-1]}"] < prm[f"test_error_at_{steps[-2]}"]


def test_lq_curves_outputs(lq_curves):
    table = _outputs_ok(lq_curves)
    rows = table.to_pylist()
    p = lq_curves.params
    steps = sorted({r["step"] for r in rows})
    assert steps == [b * p["block_steps"] for b in range(p["blocks"] + 1)]
    lq_rows = [r for r in rows if r["eps"] is not None]
    assert len(lq_rows) == len(steps) * len(p["eps"])
    # Q^TL ≥ Q always; the uniform start has Q = k^−N and Q^TL = 1/k
    assert all(r["log_Q_TL"] >= r["log_Q"] - 1e-9 for r in lq_rows)
    for r in (r for r in lq_rows if r["step"] == 0):
        assert r["log_Q"] == pytest.approx(-p["N"] * math.log(p["k"]))
        assert r["log_Q_TL"] == pytest.approx(-math.log(p["k"]))
    # the blocks chain: block b starts from block b−1's last checkpoint
    runs = lq_curves.out / "runs" / "sgd_adagrad"
    for b in range(2, p["blocks"] + 1):
        prev = sorted((runs / f"block={b - 1}" / "seed=0" / "checkpoints").glob("ckpt-*.npz"))[-1]
        start = load_policy(runs / f"block={b}" / "seed=0" / "base.npz")
        assert np.array_equal(start.w, load_policy(prev).w)
    # ... and continue one context stream: Rademacher context ids are stream indices, so block b's steps read
    # contexts (b−1)·block_steps·batch onwards, never a context an earlier block trained on
    for b in range(1, p["blocks"] + 1):
        ids = read_table(runs / f"block={b}" / "seed=0" / "rounds").column("context_id").to_numpy()
        first = (b - 1) * p["block_steps"] * p["batch"]
        np.testing.assert_array_equal(ids, first + p["batch"] * np.arange(p["block_steps"]))


def test_lq_curves_verdicts(lq_curves):
    verdict = {c["name"]: c["passed"] for c in json.loads((lq_curves.out / "verdict.json").read_text())["checks"]}
    assert verdict == {"start_is_uniform": True, "lq_moves_right": True}


def test_lq_curves_move_right_with_pretraining(lq_curves):
    p = lq_curves.params
    first, last = p["block_steps"], p["blocks"] * p["block_steps"]
    q = {(r["step"], r["eps"]): r["log_Q"] for r in lq_curves.rows if r.get("eps") is not None}
    for eps in p["eps"]:
        assert q[last, eps] >= q[first, eps]
    assert q[last, 0.5] > q[first, 0.5]
    cdf = {(r["step"], r["log10_alpha"]): r["cdf"] for r in lq_curves.rows if r.get("log10_alpha") is not None}
    # below α = 1 the likelihood CDF of the last checkpoint lies under the first one's (curve moved right)
    assert all(cdf[last, a] <= cdf[first, a] for (s, a) in cdf if s == first and a < 0)
