"""barrier — queries to reach error ε vs N: exponential with the outcome reward, about linear with the
process reward (SPEC §5, §6)."""
import itertools
import math

import numpy as np

from .common import first_reaching, fit_slope, markdown_table, mean_over_seeds, pyplot

ARMS = {"orm_best_of_m": ({"algo.name": "best_of_m"}, "orm_queries"),
        "prm_explore": ({"algo.name": "pg_process", "algo.variant": "explore"}, "prm_queries")}


def run(ctx):
    p = ctx.params
    with ctx.stage("outcome vs process reward to test error ε"):
        for N, seed, arm in itertools.product(p["N"], ctx.seeds, ARMS):
            alpha = p["p_tok"] ** N
            over, column = ARMS[arm]
            over = {**over, "task.N": N, "base.alpha": alpha, "algo.m": math.ceil(p["m_factor"] / alpha),
                    "algo.m_tok": p["m_tok"], "task.seed": seed, "run.seed": seed, "run.rounds": p["max_rounds"],
                    "run.eval_every": p["eval_every"], "run.target_error": p["eps"]}
            s, folder = ctx.run_arm(arm, {"N": N}, seed, over)
            q = first_reaching(folder, p["eps"], column)
            ctx.record(arm, {"N": N}, seed, alpha=alpha, queries=q, reached=q is not None, rounds=s["rounds"])
    orm = [r for r in ctx.rows if r["arm"] == "orm_best_of_m" and r["queries"]]
    prm = [r for r in ctx.rows if r["arm"] == "prm_explore" and r["queries"]]
    rate = math.log(1 / p["p_tok"])
    slopes = [fit_slope([r["N"] for r in orm], [r["queries"] for r in orm], [r["seed"] for r in orm],
                        "ORM: log queries vs N (log-linear)", f"≈ log(1/p_tok) = {rate:.2f} (exponential in N)",
                        log_x=False),
              fit_slope([r["N"] for r in prm], [r["queries"] for r in prm], [r["seed"] for r in prm],
                        "PRM: log queries vs N (log-linear)", "→ 0 as N grows (not exponential)", log_x=False),
              fit_slope([r["N"] for r in prm], [r["queries"] for r in prm], [r["seed"] for r in prm],
                        "PRM: log queries vs log N (log-log)", "≈ 1 (linear in N)")]
    agg = mean_over_seeds(ctx.rows, ["arm", "N"], ["alpha", "queries", "rounds"])
    agg.sort(key=lambda r: (r["arm"], r["N"]))
    missed = [r for r in ctx.rows if not r["reached"]]
    if missed:
        ctx.notes.append(f"{len(missed)} run(s) did not reach ε within max_rounds = {p['max_rounds']} "
                         f"(arms/N: {sorted({(r['arm'], r['N']) for r in missed})}); left out of the fits.")
    by_n = {(r["arm"], r["N"]): r["queries"] for r in agg if r["queries"]}
    big = max(p["N"])
    if ("orm_best_of_m", big) in by_n and ("prm_explore", big) in by_n:
        ctx.notes.append(f"at N = {big}: ORM {by_n[('orm_best_of_m', big)]:.3g} queries vs PRM "
                         f"{by_n[('prm_explore', big)]:.3g} (ratio {by_n[('orm_best_of_m', big)] / by_n[('prm_explore', big)]:.3g}).")
    _plot(ctx, agg)
    ctx.write(markdown_table(agg, ["arm", "N", "alpha", "queries", "rounds", "seeds"]), slopes)


def _plot(ctx, agg):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    for arm, style, label in (("orm_best_of_m", "o-", "outcome reward (best-of-m)"),
                              ("prm_explore", "s--", "process reward (Algorithm 2)")):
        rows = [r for r in agg if r["arm"] == arm and r["queries"]]
        ax.plot([r["N"] for r in rows], [r["queries"] for r in rows], style, label=label)
    Ns = np.array(sorted({r["N"] for r in agg}), float)
    ax.plot(Ns, 1 / ctx.params["p_tok"] ** Ns, "k:", lw=1, label="1/α = p_tok^(−N)")
    ax.set_yscale("log")
    ax.set_xlabel("response length N (tokens)")
    ax.set_ylabel(f"reward queries to test error ≤ {ctx.params['eps']}")
    ax.set_title(f"The base-model barrier (k = {ctx.config['task']['k']}, p_tok = {ctx.params['p_tok']})")
    ax.legend(fontsize=8)
    ctx.figure(fig, "barrier")
    plt.close(fig)
