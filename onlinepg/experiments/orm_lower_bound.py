"""orm-lower-bound — queries best-of-m needs to reach error ε against 1/(γ²·Q_q(ε)) on a staircase-LQ family, as ε
crosses each step of the staircase (docs/theory.md §6; the bound and the family are reconstructions).

The family is a cells instance (D = M·N·k = k/γ², the size the bound needs) with a staircase base
(``base.kind = "staircase"``): context groups of base likelihoods α_1 < … < α_G. Its Likelihood Quantile is a step
function: for ε between the cumulative masses S_{g−1} and S_g of the g lowest groups, Q_q(ε) = α_g. Any
outcome-reward algorithm needs Ω̃(1/(γ²·Q_q(ε))) queries to reach error ε, and best-of-m with m ≈ 1/Q_q(ε) matches
it. The targets are one ε per step, in the middle of it (ε_g = S_{g−1} + m_g/2), so ε ± o(ε) stays on the step, and
Q_q(ε_g) is computed by ``onlinepg.lq`` on the actual base. Best-of-m runs once per target with m = ⌈m_factor /
Q_q(ε_g)⌉ until its exact test error is ≤ ε_g.

Predicted: the log-log slope of its queries against 1/(γ²·Q_q(ε)) across the targets is 1, and the queries are at
least n(ε)/Q_q(ε) (``required_finds``: the contexts that must have been found, each query on a context not yet found
hitting y* with probability at most Q_q(ε)). Control: the process-reward arm (Algorithm 2) pays for the token-level
quantile instead, whose per-token exploration rate ½(α_g^{1/N} + 1/k) moves little across the steps, so its slope
against the same axis is far below 1 and it is not bound by the floor.
"""
import itertools
import math

import numpy as np

from .. import config as C
from ..build import build_task
from ..lq import evaluate_likelihoods, likelihood_quantile, token_likelihood_quantile
from ..tasks import staircase_base
from .common import first_reaching, fit_slope, markdown_table, mean_over_seeds, pyplot

BEST_OF_M = "best_of_m"
PRM = "prm_explore"


def step_targets(alphas, fractions, M):
    """Mid-step error targets of a staircase base: (ε_g, α_g, S_g) for each group in increasing α, S_g the mass of
    the groups up to and including g. The masses are those ``staircase_base`` gives M contexts (rounded sizes)."""
    order = np.argsort(alphas)
    fr = np.asarray(fractions, float)
    bounds = np.round(np.cumsum(fr / fr.sum()) * M).astype(int)
    sizes = np.diff(np.concatenate([[0], bounds])) / M
    S = np.concatenate([[0.0], np.cumsum(sizes[order])])
    return [(float(S[i] + sizes[g] / 2), float(alphas[g]), float(S[i + 1])) for i, g in enumerate(order)]


def required_finds(M, eps, alpha, S):
    """How many contexts of likelihood ≤ α under the base (mass S) a learner must have found — queried y* on at
    least once — to have test error ≤ ε: a context never found keeps its base likelihood ≤ α (cells contexts share
    no weights), so it adds at least (1 − α)/M to the error. n ≥ M·(S − ε/(1 − α))."""
    return M * (S - eps / (1.0 - alpha))


def instance(ctx, seed=0):
    """The configured task and staircase base (task seed ``seed``): (task, base Policy, Likelihoods of y* under the
    base on every context)."""
    p = ctx.params
    cfg = C.resolve(C.apply_overrides(ctx.config, [f"task.N={p['N']}", f"task.seed={seed}"] + ctx.config_sets))
    task = build_task(cfg)
    base, _ = staircase_base(task, p["alphas"], p["fractions"])
    return task, base, evaluate_likelihoods(base, task.all_contexts())


def run(ctx):
    p = ctx.params
    task, base, lik = instance(ctx)
    gamma2 = task.gamma ** 2
    targets = step_targets(p["alphas"], p["fractions"], task.M)
    Q = [math.exp(likelihood_quantile(lik.loglik, eps)) for eps, _, _ in targets]
    QTL = [math.exp(token_likelihood_quantile(lik.min_token, eps)) for eps, _, _ in targets]
    floor = float(task.k) ** -task.N
    if min(Q) <= p["min_alpha_over_uniform"] * floor:
        raise C.ConfigError(f"orm-lower-bound: every alpha must exceed {p['min_alpha_over_uniform']}·k^−N = "
                            f"{p['min_alpha_over_uniform'] * floor:.3g} (else the uniform half of the mixture sets the "
                            f"rate), got {min(Q):g}")
    x = [1.0 / (gamma2 * q) for q in Q]
    prm_rate = [1.0 / (0.5 * (qt + 1.0 / task.k)) for qt in QTL]
    prm_slope = float(np.polyfit(np.log(x), np.log(prm_rate), 1)[0])
    ctx.predict("slope", "log-log slope of best-of-m's ORM queries to reach error ε against 1/(γ²·Q_q(ε)), over "
                "the mid-step targets ε = " + ", ".join(f"{e:.3g}" for e, _, _ in targets) + " (Q_q = " +
                ", ".join(f"{q:.3g}" for q in Q) + f", γ² = {gamma2:.4g}); m = ⌈{p['m_factor']}/Q_q(ε)⌉",
                "1", f"± {p['tol_slope']}",
                "the process-reward arm's slope against the same axis (predicted ≈ the slope of its per-token rate "
                f"1/½(Q^TL + 1/k): {prm_slope:.2f}) must be below 1 − tol")
    need = [required_finds(task.M, eps, alpha, S) for eps, alpha, S in targets]
    floors = [n / q for n, q in zip(need, Q)]
    ctx.predict("floor", "best-of-m's ORM queries to reach each target ε, mean over seeds",
                "≥ n(ε)/Q_q(ε): the contexts it must have found (n = " + ", ".join(f"{n:.3g}" for n in need) +
                ") over the chance Q_q(ε) that one query on a context not yet found hits y* (= " +
                ", ".join(f"{f:.3g}" for f in floors) + ")", f"≥ (1 − {p['tol_floor']})·n(ε)/Q_q(ε)",
                "the process-reward arm is not bound by it: its prefix checks to the lowest step's target must "
                "fall below (1 − tol) times that floor")
    with ctx.stage("best-of-m (m ≈ 1/Q_q(ε)) and the process-reward arm to each mid-step error target"):
        for ((eps, alpha, S), q, qt, xx), seed in itertools.product(zip(targets, Q, QTL, x), ctx.seeds):
            cell = {"eps": round(eps, 6)}
            common = {"task.N": p["N"], "task.seed": seed, "run.seed": seed, "run.target_error": eps, "run.rounds": p["max_rounds"],
                      "run.eval_every": p["eval_every"], "base.alphas": p["alphas"],
                      "base.fractions": p["fractions"]}
            arms = {BEST_OF_M: ({"algo.name": "best_of_m", "algo.m": math.ceil(p["m_factor"] / q)}, "orm_queries"),
                    PRM: ({"algo.name": "pg_process", "algo.variant": "explore", "algo.m_tok": p["m_tok"]},
                          "prm_queries")}
            n_req = required_finds(task.M, eps, alpha, S)
            for arm, (over, column) in arms.items():
                s, folder = ctx.run_arm(arm, cell, seed, {**common, **over})
                queries = first_reaching(folder, eps, column)
                ctx.record(arm, cell, seed, alpha=alpha, Q=q, QTL=qt, inv_gamma2_Q=xx, queries=queries,
                           reached=queries is not None, m=over.get("algo.m"), floor=n_req / q,
                           ratio=None if queries is None else queries / xx)
    slopes = {arm: fit_slope([r["inv_gamma2_Q"] for r in ctx.rows if r["arm"] == arm and r["reached"]],
                             [r["queries"] for r in ctx.rows if r["arm"] == arm and r["reached"]],
                             [r["seed"] for r in ctx.rows if r["arm"] == arm and r["reached"]],
                             f"{arm}: log queries vs log 1/(γ²Q_q(ε))",
                             "1" if arm == BEST_OF_M else f"≈ {prm_slope:.2f} (control)") for arm in (BEST_OF_M, PRM)}
    agg = mean_over_seeds(ctx.rows, ["arm", "eps"], ["alpha", "Q", "QTL", "inv_gamma2_Q", "floor", "queries", "ratio"])
    for r in agg:
        r["reached"] = sum(x["reached"] for x in ctx.rows if x["arm"] == r["arm"] and x["eps"] == r["eps"])
    agg.sort(key=lambda r: (r["arm"], r["eps"]))
    _verdicts(ctx, p, agg, slopes)
    _plot(ctx, p, agg, slopes, gamma2)
    for r in agg:
        r["over_floor"] = None if r["queries"] is None else r["queries"] / r["floor"]
    ctx.write(markdown_table(agg, ["arm", "eps", "alpha", "Q", "QTL", "inv_gamma2_Q", "floor", "queries", "over_floor",
                                   "ratio", "reached",
                                   "seeds"]), list(slopes.values()))


def _verdicts(ctx, p, agg, slopes):
    tol = p["tol_slope"]
    s, c = slopes[BEST_OF_M], slopes[PRM]
    missed = [r for r in ctx.rows if not r["reached"]]
    ok = abs(s["slope"] - 1.0) <= tol and c["slope"] < 1.0 - tol and not missed
    ctx.verdict("slope", ok, f"best-of-m slope {s['slope']:.3f} (95% CI [{s['lo']:.3f}, {s['hi']:.3f}]); "
                f"process-reward slope {c['slope']:.3f}" + (f"; {len(missed)} run(s) never reached their target"
                                                             if missed else ""))
    tf = p["tol_floor"]
    bom = [r for r in agg if r["arm"] == BEST_OF_M]
    low = min(bom, key=lambda r: (r["queries"] or 0.0) / r["floor"])
    lowest = min((r for r in agg if r["arm"] == PRM), key=lambda r: r["eps"])
    prm_below = lowest["queries"] is not None and lowest["queries"] < (1 - tf) * lowest["floor"]
    ctx.verdict("floor", all(r["queries"] is not None and r["queries"] >= (1 - tf) * r["floor"] for r in bom)
                and prm_below,
                f"best-of-m's lowest queries/floor = {(low['queries'] or 0.0) / low['floor']:.3g} (ε = {low['eps']:.3g}); "
                f"process reward at ε = {lowest['eps']:.3g}: {_num(lowest['queries'])} prefix checks against the ORM "
                f"floor {lowest['floor']:.3g}")
    ratios = [r["queries"] / r["floor"] for r in bom if r["queries"] is not None]
    if ratios:
        ctx.notes.append(f"best-of-m's queries are {min(ratios):.3g} to {max(ratios):.3g} times the floor n(ε)/Q_q(ε): "
                         "finding each context once is a small part of the cost; the successes needed after the first "
                         "find, each still costing about 1/Q_q(ε) queries while p_w(y*) is small, are the rest.")
    if not prm_below:
        ctx.notes.append("the process-reward arm did not pass below the ORM floor at the lowest step: the floor counts "
                         "only the first find of each context, and at this scale the process-reward arm's own "
                         "learning cost (prefix checks over the many updates each context needs) is larger.")
    ctx.notes.append("best-of-m with m ≈ 1/Q_q(ε) spends up to m + 1 queries on each visit to a context of a lower "
                     "step, which it cannot yet solve: these wasted queries are part of what the bound counts for "
                     "an algorithm that does not know which contexts are out of reach.")


def _num(x):
    return "none (never reached)" if x is None else f"{x:.4g}"


def _plot(ctx, p, agg, slopes, gamma2):
    plt = pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12.0, 4.6))
    for arm, mk in ((BEST_OF_M, "o"), (PRM, "s")):
        rs = [r for r in ctx.rows if r["arm"] == arm and r["reached"]]
        ax0.scatter([r["inv_gamma2_Q"] for r in rs], [r["queries"] for r in rs], marker=mk, alpha=0.7,
                    label=f"{arm} (slope {slopes[arm]['slope']:.2f})")
    xs = np.array(sorted({r["inv_gamma2_Q"] for r in ctx.rows}))
    ref = [r for r in agg if r["arm"] == BEST_OF_M and r["ratio"]]
    c = float(np.exp(np.mean(np.log([r["ratio"] for r in ref])))) if ref else 1.0
    ax0.plot(xs, c * xs, "k--", lw=1, label=f"{c:.3g}/(γ²·Q_q(ε)) (slope 1)")
    fl = sorted((r["inv_gamma2_Q"], r["floor"]) for r in agg if r["arm"] == BEST_OF_M)
    ax0.plot([f[0] for f in fl], [f[1] for f in fl], "k:", lw=1, label="floor n(ε)/Q_q(ε)")
    ax0.set_xscale("log")
    ax0.set_yscale("log")
    ax0.set_xlabel("1/(γ²·Q_q(ε)) at the target ε")
    ax0.set_ylabel("reward queries to reach test error ≤ ε")
    ax0.set_title("Queries against the ORM lower bound's rate")
    ax0.legend(fontsize=7)
    task, base, lik = instance(ctx)
    eps = np.linspace(0.002, 0.998, 500)
    ax1.step(eps, np.exp(likelihood_quantile(lik.loglik, eps)), where="post", color="k", lw=1,
             label="Q_q(ε) of the base (onlinepg.lq)")
    for arm, mk in ((BEST_OF_M, "o"), (PRM, "s")):
        rs = sorted([r for r in agg if r["arm"] == arm and r["queries"]], key=lambda r: r["eps"])
        ax1.plot([r["eps"] for r in rs], [c / (gamma2 * r["queries"]) for r in rs], mk + "-", lw=0.8,
                 label=f"{arm}: {c:.3g}/(γ²·queries)")
    ax1.set_yscale("log")
    ax1.set_xlabel("target test error ε")
    ax1.set_ylabel("likelihood; queries as c/(γ²·queries)")
    ax1.set_title(f"Staircase LQ (α = {p['alphas']})\nand the cost to reach each step", fontsize=9)
    ax1.legend(fontsize=7)
    fig.tight_layout()
    ctx.figure(fig, "orm_lower_bound")
    plt.close(fig)
