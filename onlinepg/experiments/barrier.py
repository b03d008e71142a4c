"""barrier — queries to reach error ε vs N: exponential with the outcome reward, about linear with the
process reward (docs/theory.md §5, §6).

The reference rate is the one of the exploration actually used: best-of-m draws from ½q₀ + ½Unif, whose mass on
y* is ½(p_tok^N + k^−N) when the base puts p_tok on every correct token. With p_tok > 1/k the base half dominates
and the predicted log-queries slope is about log(1/p_tok) per token; with p_tok < 1/k it would be log k, the
uniform half's (so the spec requires p_tok > 1/k). On-policy ORM and PRM without exploration run beside them and
are shown, not checked: the practical gap.
"""
import itertools
import math

import numpy as np

from ..errors import ConfigError
from .common import first_reaching, fit_slope, markdown_table, mean_over_seeds, pyplot

ARMS = {"orm_best_of_m": ({"algo.name": "best_of_m"}, "orm_queries"),
        "prm_explore": ({"algo.name": "pg_process", "algo.variant": "explore"}, "prm_queries"),
        "orm_on_policy": ({"algo.name": "pg", "algo.behaviour": "policy"}, "orm_queries"),
        "prm_on_policy": ({"algo.name": "pg_process", "algo.variant": "on_policy"}, "prm_queries")}
CHECKED = ("orm_best_of_m", "prm_explore")
LABELS = {"orm_best_of_m": "outcome reward, best-of-m", "prm_explore": "process reward, Algorithm 2",
          "orm_on_policy": "outcome reward, on-policy (no exploration)",
          "prm_on_policy": "process reward, on-policy (no exploration)"}


def mixture_mass(p_tok, k, N):
    """Mass of ½q₀ + ½Unif on y* when q₀ puts p_tok on every correct token."""
    return 0.5 * (p_tok ** N + float(k) ** -N)


def predicted_slope(p_tok, k, Ns):
    """Least-squares slope of log(1/mixture mass) against N over the grid (per token)."""
    y = [-math.log(mixture_mass(p_tok, k, N)) for N in Ns]
    return float(np.polyfit(np.asarray(Ns, float), y, 1)[0])


def require_base_above_uniform(name, p_tok, k):
    """Refuse p_tok ≤ 1/k: the uniform half of the exploration mixture would then set the rate, not the base."""
    if not p_tok > 1.0 / k:
        raise ConfigError(f"{name}: p_tok must exceed 1/k = {1 / k:.4g} (else the uniform half of the exploration "
                          f"mixture sets the rate), got {p_tok}")


def run(ctx):
    p = ctx.params
    k = ctx.shared.task.k
    require_base_above_uniform("barrier", p["p_tok"], k)
    pred = predicted_slope(p["p_tok"], k, p["N"])
    ctx.predict("orm_exponential", "ORM best-of-m: slope of log(queries to error ε) against N",
                f"{pred:.3f} per token (log 1/½(p^N + k^−N) over N = {p['N']}; log k = {math.log(k):.3f})",
                f"± {p['tol_orm_slope']}", f"an exploration whose uniform half set the rate gives log k = "
                f"{math.log(k):.2f}, outside the band")
    ctx.predict("prm_polynomial", "PRM Algorithm 2: log-log slope of queries to error ε against N",
                "≤ 1: N·min(1/p_tok, k)/γ² + 1/(εγ²) is linear in N plus a constant",
                f"≤ 1 + {p['tol_prm_loglog']}",
                "the ORM best-of-m arm's log-log slope over the same grid must exceed it (exponential growth)")
    with ctx.stage("outcome vs process reward to test error ε, with and without exploration"):
        for N, seed, arm in itertools.product(p["N"], ctx.seeds, ARMS):
            alpha = p["p_tok"] ** N
            over, column = ARMS[arm]
            over = {**over, "task.N": N, "base.alpha": alpha, "algo.m": math.ceil(p["m_factor"] / alpha),
                    "algo.m_tok": p["m_tok"], "task.seed": seed, "run.seed": seed, "run.rounds": p["max_rounds"],
                    "run.eval_every": p["eval_every"], "run.target_error": p["eps"]}
            s, folder = ctx.run_arm(arm, {"N": N}, seed, over)
            q = first_reaching(folder, p["eps"], column)
            ctx.record(arm, {"N": N}, seed, alpha=alpha, mixture_mass=mixture_mass(p["p_tok"], k, N), queries=q,
                       reached=q is not None, rounds=s["rounds"])
    fits = {arm: fit_slope([r["N"] for r in ctx.rows if r["arm"] == arm and r["queries"]],
                           [r["queries"] for r in ctx.rows if r["arm"] == arm and r["queries"]],
                           [r["seed"] for r in ctx.rows if r["arm"] == arm and r["queries"]],
                           f"{arm}: log queries vs N (log-linear)",
                           f"{pred:.3f}" if arm == "orm_best_of_m" else "—", log_x=False) for arm in ARMS}
    loglog = {arm: fit_slope([r["N"] for r in ctx.rows if r["arm"] == arm and r["queries"]],
                             [r["queries"] for r in ctx.rows if r["arm"] == arm and r["queries"]],
                             [r["seed"] for r in ctx.rows if r["arm"] == arm and r["queries"]],
                             f"{arm}: log queries vs log N (log-log)", "≤ 1" if arm == "prm_explore" else "> 1")
              for arm in CHECKED}
    agg = mean_over_seeds(ctx.rows, ["arm", "N"], ["alpha", "mixture_mass", "queries", "rounds"])
    for r in agg:
        r["reached"] = sum(x["reached"] for x in ctx.rows if x["arm"] == r["arm"] and x["N"] == r["N"])
    agg.sort(key=lambda r: (r["arm"], r["N"]))
    _verdicts(ctx, p, pred, fits, loglog)
    missed = [r for r in ctx.rows if not r["reached"]]
    if missed:
        ctx.notes.append(f"{len(missed)} run(s) did not reach ε within max_rounds = {p['max_rounds']} "
                         f"(arms/N: {sorted({(r['arm'], r['N']) for r in missed})}); left out of the fits.")
    _plot(ctx, agg, k)
    ctx.write(markdown_table(agg, ["arm", "N", "alpha", "mixture_mass", "queries", "rounds", "reached", "seeds"]),
              list(fits.values()) + list(loglog.values()))


def _verdicts(ctx, p, pred, fits, loglog):
    orm, prm = fits["orm_best_of_m"], fits["prm_explore"]
    missing = [arm for arm in CHECKED if not fits[arm]["per_seed"]]
    ok_orm = not missing and abs(orm["slope"] - pred) <= p["tol_orm_slope"]
    ctx.verdict("orm_exponential", ok_orm, f"slope {orm['slope']:.3f} (95% CI [{orm['lo']:.3f}, {orm['hi']:.3f}]) "
                f"against the predicted {pred:.3f}" + (f"; no fit for {missing}" if missing else ""))
    limit = 1.0 + p["tol_prm_loglog"]
    prm, orm = loglog["prm_explore"], loglog["orm_best_of_m"]
    ctx.verdict("prm_polynomial", not missing and prm["slope"] <= limit < orm["slope"],
                f"PRM log-log slope {prm['slope']:.3f} (95% CI [{prm['lo']:.3f}, {prm['hi']:.3f}]) against the "
                f"limit {limit:.3f}; ORM log-log slope {orm['slope']:.3f}")


def _plot(ctx, agg, k):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.6, 4.6))
    styles = {"orm_best_of_m": "o-", "prm_explore": "s-", "orm_on_policy": "o:", "prm_on_policy": "s:"}
    for arm in ARMS:
        rows = [r for r in agg if r["arm"] == arm and r["queries"]]
        if rows:
            ax.plot([r["N"] for r in rows], [r["queries"] for r in rows], styles[arm], label=LABELS[arm])
    Ns = np.array(sorted({r["N"] for r in agg}), float)
    p = ctx.params
    ax.plot(Ns, [1 / mixture_mass(p["p_tok"], k, N) for N in Ns], "k--", lw=1,
            label="1 / ½(p_tok^N + k^−N) (exploration mixture)")
    ax.set_yscale("log")
    ax.set_xlabel("response length N (tokens)")
    ax.set_ylabel(f"reward queries to test error ≤ {p['eps']}")
    ax.set_title(f"The base-model barrier (k = {k}, p_tok = {p['p_tok']})")
    ax.legend(fontsize=7)
    ctx.figure(fig, "barrier")
    plt.close(fig)
