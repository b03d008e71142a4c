"""sgd-rate — rounds to test error ε of supervised SGD under the adaptive rate and the constant 1/4, on two
families with disjoint per-context weights (docs/theory.md §4.1, §6; the spec states the checks).

The exact floor. For one context, ℓ(w) = −log p_w(y*|x) is convex, so an update w' = w + ηg with g = −∇ℓ(w) has
ℓ(w') ≥ ℓ(w) − η‖g‖², and η‖g‖² = ‖g‖²/(4 + 2‖g‖²) < ½ under the adaptive rate. On cells and on the constant
family the contexts' weights are disjoint, so an update moves only its own context's loss, and from w = 0 every
context starts at N ln k. Mean test error ≤ ε over M equally likely contexts needs mean_j p_j ≥ 1 − ε with
p_j = k^−N e^{a_j}, a_j ≤ N ln k the loss context j has shed; the rounds are at least 2 Σ_j a_j, and Σ_j a_j
is smallest when whole contexts are finished first (p is convex in a): ``floor_rounds``.
"""
import itertools
import math

import numpy as np

from .common import markdown_table, mean_over_seeds, pyplot

FAMILIES = ("constant", "cells")
ARMS = ("adaptive", "quarter")
LABELS = {"adaptive": "adaptive η = 1/(4+2‖g‖²)", "quarter": "constant η = 1/4 (control)"}


def floor_rounds(k, N, M, eps):
    """The fewest adaptive-SGD rounds from w = 0 to mean test error ≤ eps over M equally likely contexts with
    disjoint weights (module docstring): 2·(n·N ln k + the partial context's a), n the contexts finished."""
    q = math.exp(-N * math.log(k))                  # every context's p(y*|x) at w = 0
    need = M * (1.0 - eps) - M * q                  # Σ_j (p_j − q) the run must gain
    if need <= 0.0:
        return 0.0
    full = 1.0 - q                                  # the gain of a finished context
    n = min(M, int(need // full))
    rest = need - n * full
    partial = math.log(q + rest) + N * math.log(k) if rest > 0.0 else 0.0
    return 2.0 * (n * N * math.log(k) + partial)


def _rate(arm, N):
    """(algo.lr_rule, algo.lr) of an arm; the tests swap it for the wrong engines each check must catch."""
    return {"adaptive": ("adaptive", 1.0), "quarter": ("constant", 0.25)}[arm]


def _task(p, family, N, seed):
    if family == "constant":
        M = p["M_constant"]
        return {"task.kind": "constant", "task.M": M, "task.tail": (M - 1) / M}, M
    from ..config import margin_contexts
    return {"task.kind": "cells", "task.gamma": p["gamma_cells"]}, margin_contexts("cells", p["k"], N, 0,
                                                                                   p["gamma_cells"])


def run(ctx):
    p = ctx.params
    Nmax = max(p["N"])
    ctx.predict("floor", "rounds to test error ≤ ε of every adaptive run (both families, every N and seed)",
                "≥ F = floor_rounds(k, N, M, ε) (exact)", "none (a theorem: any run below F is an engine bug)",
                "the constant 1/4 arm, not bound by F, must fall below it (check `control`)")
    ctx.predict("control", f"rounds to ε of the constant rate 1/4 on the constant family at N = {Nmax}, every "
                "seed", "< F (η‖g‖² = ‖g‖²/4 exceeds ½ once ‖g‖² > 2)", "none",
                "an engine whose constant rule behaved like the adaptive one stays above F")
    ctx.predict("shared_weights_growth", f"constant family: mean T_ε(N = {Nmax}) / mean T_ε(N = 1), per arm",
                f"adaptive in {p['growth_adaptive']}, constant 1/4 in {p['growth_quarter']}",
                "the bands: ±10 % around the exploratory mean (seeds 0–4: 3.17) for the adaptive arm; a factor "
                "3 either way of 0.059 for the 1/4 arm, whose T_ε(N_max) is a few evaluation intervals (24–52 "
                "rounds)",
                "an adaptive rule that were the constant 1/4 lands in the 1/4 band, not the adaptive one")
    ctx.predict("cells_flat", f"cells: mean T_ε(N = {Nmax}) / mean T_ε(N = 1), both arms",
                f"in {p['cells_ratio']}", "the band (±10 % around the exploratory means, seeds 0–4: 0.79 and 0.77)",
                "a rate that paid the factor N (1/(4+4N)) more than doubles it")
    with ctx.stage("supervised SGD from w = 0 to test error ε: adaptive rate and constant 1/4, two families"):
        for family, N, seed, arm in itertools.product(FAMILIES, p["N"], ctx.seeds, ARMS):
            task, M = _task(p, family, N, seed)
            rule, lr = _rate(arm, N)
            over = {**task, "task.k": p["k"], "task.N": N, "task.seed": seed, "run.seed": seed,
                    "run.rounds": p["T"], "run.eval_every": p["eval_every"], "run.target_error": p["eps"],
                    "algo.lr_rule": rule, "algo.lr": lr}
            s, _ = ctx.run_arm(f"{family}/{arm}", {"N": N}, seed, over)
            F = floor_rounds(p["k"], N, M, p["eps"])
            T = s["rounds"] if s["reached_target"] else None
            ctx.record(arm, {"family": family, "N": N}, seed, M=M, floor=F, rounds_to_eps=T,
                       over_floor=None if T is None else T / F)
    agg = mean_over_seeds([r for r in ctx.rows if r["rounds_to_eps"] is not None], ["family", "arm", "N"],
                          ["M", "floor", "rounds_to_eps", "over_floor"])
    agg.sort(key=lambda r: (r["family"], r["arm"], r["N"]))
    by = {(r["family"], r["arm"], r["N"]): r for r in agg}
    _verdicts(ctx, p, by, Nmax)
    _plot(ctx, agg)
    ctx.write(markdown_table(agg, ["family", "arm", "N", "M", "floor", "rounds_to_eps", "over_floor", "seeds"]))


def _growth(by, family, arm, Nmax):
    a, b = by.get((family, arm, Nmax)), by.get((family, arm, 1))
    return None if a is None or b is None else a["rounds_to_eps"] / b["rounds_to_eps"]


def _inside(v, band):
    return v is not None and band[0] <= v <= band[1]


def _fmt(v):
    return "not reached" if v is None else f"{v:.3g}"


def _verdicts(ctx, p, by, Nmax):
    rows = ctx.rows
    missing = [r for r in rows if r["rounds_to_eps"] is None]
    adaptive = [r for r in rows if r["arm"] == "adaptive" and r["rounds_to_eps"] is not None]
    low = min(adaptive, key=lambda r: r["over_floor"], default=None)
    ctx.verdict("floor", not missing and low is not None and low["over_floor"] >= 1.0,
                (f"lowest adaptive T_ε/F = {low['over_floor']:.3f} ({low['family']}, N = {low['N']}, seed "
                 f"{low['seed']}: {low['rounds_to_eps']} rounds against F = {low['floor']:.0f})" if low else "no run")
                + (f"; {len(missing)} run(s) never reached ε" if missing else ""))
    ctl = [r for r in rows if r["family"] == "constant" and r["arm"] == "quarter" and r["N"] == Nmax]
    ctx.verdict("control", bool(ctl) and all(r["rounds_to_eps"] is not None and r["rounds_to_eps"] < r["floor"]
                                             for r in ctl),
                "; ".join(f"seed {r['seed']}: {_fmt(r['rounds_to_eps'])} vs F = {r['floor']:.0f}" for r in ctl))
    ga, gq = _growth(by, "constant", "adaptive", Nmax), _growth(by, "constant", "quarter", Nmax)
    ctx.verdict("shared_weights_growth", _inside(ga, p["growth_adaptive"]) and _inside(gq, p["growth_quarter"]),
                f"adaptive {_fmt(ga)} (band {p['growth_adaptive']}), constant 1/4 {_fmt(gq)} "
                f"(band {p['growth_quarter']})")
    ca, cq = _growth(by, "cells", "adaptive", Nmax), _growth(by, "cells", "quarter", Nmax)
    ctx.verdict("cells_flat", _inside(ca, p["cells_ratio"]) and _inside(cq, p["cells_ratio"]),
                f"adaptive {_fmt(ca)}, constant 1/4 {_fmt(cq)} (band {p['cells_ratio']})")
    ctx.notes.append(f"Finding about the rule: with shared weights (constant family) the adaptive rate's rounds to "
                     f"ε grow {_fmt(ga)}× from N = 1 to N = {Nmax} while the constant 1/4's change {_fmt(gq)}×; "
                     f"on cells (its own weights per position, M = 1/(Nγ²)) they change {_fmt(ca)}× and "
                     f"{_fmt(cq)}×. The adaptive step η·g = g/(4 + 2‖g‖²) shrinks like 1/‖g‖ once ‖g‖² ≫ 2, and "
                     "on shared weights ‖g‖ grows like N.")
    ratios = [r["over_floor"] for r in by.values() if r["arm"] == "adaptive" and r["family"] == "constant"]
    if ratios:
        ctx.notes.append(f"The floor binds on the constant family as N grows: adaptive T_ε/F from "
                         f"{max(ratios):.1f} (N = 1) to {min(ratios):.2f}; on cells T_ε/F stays near "
                         f"{np.mean([r['over_floor'] for r in by.values() if r['family'] == 'cells' and r['arm'] == 'adaptive']):.0f} "
                         "(reported, not a check there).")


def _plot(ctx, agg):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.4))
    for ax, family in zip(axes, FAMILIES):
        for arm, style in (("adaptive", "o-"), ("quarter", "^:")):
            rows = [r for r in agg if r["family"] == family and r["arm"] == arm]
            ax.plot([r["N"] for r in rows], [r["rounds_to_eps"] for r in rows], style, label=LABELS[arm])
        rows = [r for r in agg if r["family"] == family and r["arm"] == "adaptive"]
        ax.plot([r["N"] for r in rows], [r["floor"] for r in rows], "k--", lw=1, label="floor F (exact)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("response length N (tokens)")
        ax.set_ylabel(f"rounds to test error ≤ {ctx.params['eps']}")
        ax.set_title({"constant": "constant family: positions share weights",
                      "cells": "cells: every position its own weights"}[family])
        ax.legend(fontsize=7)
    ctx.figure(fig, "sgd-rate")
    plt.close(fig)
