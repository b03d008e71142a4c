"""token-lq — same α, different token profile: ORM cost follows α, PRM cost follows Q^TL (docs/theory.md §6).

The bottleneck's hard token has probability h = α/easy^{N−1}; every α of the spec must give h > 1/k, or token
exploration from the uniform half of ½q₀ + ½Unif (probability ≥ 1/(2k) on the hard token) would cap the process
reward's cost and hide Q^TL (the run refuses such parameters).
"""
import itertools
import math

import numpy as np

from ..build import build_task
from ..config import apply_overrides, resolve
from ..errors import ConfigError
from ..tasks import bottleneck_base, cells_base
from .common import first_reaching, markdown_table, mean_over_seeds, pyplot

ARMS = {"orm_best_of_m": ({"algo.name": "best_of_m"}, "orm_queries"),
        "prm_explore": ({"algo.name": "pg_process", "algo.variant": "explore"}, "prm_queries")}


def _profile(ctx, base_kind, alpha, seed):
    """The base's exact sequence likelihood Q and token-level min likelihood Q^TL (equal on every context)."""
    cfg = resolve(apply_overrides(ctx.config, ctx.config_sets + [f"task.seed={seed}"]))
    task = build_task(cfg)
    b = task.all_contexts()
    pol = cells_base(task, alpha) if base_kind == "flat" else bottleneck_base(
        task, alpha, position=task.N // 2, easy=ctx.params["easy"])
    ll, mn, _ = pol.loglik(None, b.J, b.Ystar)
    return float(np.exp(ll.min())), float(np.exp(mn.min()))


def _register(ctx, p):
    ctx.predict("orm_same_alpha", "ORM best-of-m: query ratio bottleneck / flat base, every α",
                "1 (the outcome reward sees only the sequence likelihood α)",
                f"within [1/{p['tol_orm_ratio']}, {p['tol_orm_ratio']}]",
                "the PRM ratio at the smallest α must lie outside this band")
    lo, hi = p["prm_slope_band"]
    ctx.predict("prm_follows_qtl", "PRM Algorithm 2: log-log slope of the bottleneck / flat query ratio against "
                "the Q^TL ratio flat / bottleneck, across α",
                "1 where N/Q^TL dominates the cost, less where the additive 1/ε term does", f"in [{lo}, {hi}]",
                f"the ORM arm's slope against the same Q^TL ratios must lie below {lo}")


def run(ctx):
    p = ctx.params
    k, N = ctx.shared.task.k, ctx.shared.task.N
    for alpha in p["alpha"]:
        hard = alpha / p["easy"] ** (N - 1)
        if not hard > 1.0 / k:
            raise ConfigError(f"token-lq: alpha = {alpha:g} gives a hard-token probability α/easy^(N−1) = "
                              f"{hard:.3g} "
                              f"≤ 1/k = {1 / k:.3g}, where the uniform half of the exploration caps the process "
                              "reward's cost; raise alpha or easy")
    _register(ctx, p)
    with ctx.stage("flat vs bottleneck base, outcome vs process reward"):
        for alpha, base_kind, seed, arm in itertools.product(p["alpha"], ("flat", "bottleneck"), ctx.seeds, ARMS):
            over, column = ARMS[arm]
            base = ({"base.kind": "alpha"} if base_kind == "flat" else
                    {"base.kind": "bottleneck", "base.easy": p["easy"],
                     "base.position": ctx.shared.task.N // 2})
            over = {**over, **base, "base.alpha": alpha, "algo.m": math.ceil(p["m_factor"] / alpha),
                    "algo.m_tok": p["m_tok"], "task.seed": seed, "run.seed": seed, "run.rounds": p["max_rounds"],
                    "run.eval_every": p["eval_every"], "run.target_error": p["eps"]}
            cell = {"alpha": alpha, "base": base_kind}
            s, folder = ctx.run_arm(arm, cell, seed, over)
            Q, QTL = _profile(ctx, base_kind, alpha, seed)
            q = first_reaching(folder, p["eps"], column)
            ctx.record(arm, cell, seed, Q=Q, Q_TL=QTL, queries=q, reached=q is not None, rounds=s["rounds"])
    agg = mean_over_seeds(ctx.rows, ["arm", "alpha", "base"], ["Q", "Q_TL", "queries", "rounds"])
    agg.sort(key=lambda r: (r["arm"], -r["alpha"], r["base"]))
    ratios = _ratios(agg, p["alpha"])
    for arm in ARMS:
        ctx.notes.append(f"{arm}: bottleneck / flat query ratio — " +
                         ", ".join(f"α={a:g}: {r[arm]:.3g} (Q^TL ratio {r['qtl']:.3g})" for a, r in ratios.items()
                                   if r[arm] is not None))
    _verdicts(ctx, p, ratios)
    _plot(ctx, agg)
    ctx.write(markdown_table(agg, ["arm", "alpha", "base", "Q", "Q_TL", "queries", "rounds", "seeds"]))


def _ratios(agg, alphas):
    """Per α: the query ratio bottleneck / flat of each arm (None if a run missed ε) and Q^TL flat / bottleneck."""
    out = {}
    for alpha in alphas:
        row = {}
        for arm in ARMS:
            d = {r["base"]: r for r in agg if r["arm"] == arm and r["alpha"] == alpha}
            q = (d["flat"]["queries"], d["bottleneck"]["queries"])
            row[arm] = q[1] / q[0] if all(q) else None
            row["qtl"] = d["flat"]["Q_TL"] / d["bottleneck"]["Q_TL"]
        out[alpha] = row
    return out


def _verdicts(ctx, p, ratios):
    tol = p["tol_orm_ratio"]
    orm = [r["orm_best_of_m"] for r in ratios.values()]
    prm_last = ratios[min(ratios)]["prm_explore"]
    ok = all(v is not None and 1 / tol <= v <= tol for v in orm) and prm_last is not None and prm_last > tol
    ctx.verdict("orm_same_alpha", ok, "ORM ratios " + ", ".join("missed" if v is None else f"{v:.3g}" for v in orm)
                + f"; PRM ratio at the smallest α: {prm_last if prm_last is None else round(prm_last, 3)}")
    slope = {}
    for arm in ARMS:
        pts = [(r["qtl"], r[arm]) for r in ratios.values() if r[arm] is not None]
        slope[arm] = (float(np.polyfit(np.log([x for x, _ in pts]), np.log([y for _, y in pts]), 1)[0])
                      if len(pts) >= 2 else float("nan"))
    lo, hi = p["prm_slope_band"]
    ctx.verdict("prm_follows_qtl", lo <= slope["prm_explore"] <= hi and slope["orm_best_of_m"] < lo,
                f"PRM slope {slope['prm_explore']:.3f}; ORM slope {slope['orm_best_of_m']:.3f}")


def _plot(ctx, agg):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    styles = {("orm_best_of_m", "flat"): "o-", ("orm_best_of_m", "bottleneck"): "o--",
              ("prm_explore", "flat"): "s-", ("prm_explore", "bottleneck"): "s--"}
    for (arm, base), style in styles.items():
        rows = sorted([r for r in agg if r["arm"] == arm and r["base"] == base and r["queries"]],
                      key=lambda r: -r["alpha"])
        ax.plot([1 / r["Q_TL"] for r in rows], [r["queries"] for r in rows], style, label=f"{arm}, {base} base")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("1/Q^TL (the base's smallest correct-token probability⁻¹)")
    ax.set_ylabel(f"reward queries to test error ≤ {ctx.params['eps']}")
    ax.set_title("Same α, different token profile")
    ax.legend(fontsize=8)
    ctx.figure(fig, "token-lq")
    plt.close(fig)
