"""staircase — with a staircase base, the outcome-reward error plateaus at the mass of the groups the
queries cannot reach (SPEC §6)."""
import itertools

import numpy as np

from ..trace import read_table
from .common import markdown_table, mean_over_seeds, pyplot

ARMS = {"orm_pg": ({"algo.name": "pg", "algo.behaviour": "policy"}, "orm_queries"),
        "prm_explore": ({"algo.name": "pg_process", "algo.variant": "explore"}, "prm_queries")}


def _masses(p):
    fr = np.asarray(p["fractions"], float)
    return fr / fr.sum()


def run(ctx):
    p = ctx.params
    masses = _masses(p)
    curves = {}
    with ctx.stage("outcome-reward PG and process-reward Algorithm 2 from a staircase base"):
        for seed, arm in itertools.product(ctx.seeds, ARMS):
            over, column = ARMS[arm]
            over = {**over, "base.alphas": p["alphas"], "base.fractions": p["fractions"], "algo.m_tok": p["m_tok"],
                    "task.seed": seed, "run.seed": seed, "run.rounds": p["rounds"], "run.eval_every": p["eval_every"]}
            s, folder = ctx.run_arm(arm, {}, seed, over)
            ev = read_table(folder / "eval").to_pydict()
            curves[(arm, seed)] = (np.asarray(ev[column], float), np.asarray(ev["test_error"]))
            queries = float(ev[column][-1])
            # the groups a budget of T queries per context cannot reach: α_g < M/T
            per_context = queries / ctx.config["task"]["M"]
            unreachable = float(sum(m for a, m in zip(p["alphas"], masses) if a * per_context < 1.0))
            ctx.record(arm, {}, seed, queries=queries, final_test_error=s["final_test_error"],
                       unreachable_mass=unreachable, queries_per_context=per_context)
    agg = mean_over_seeds(ctx.rows, ["arm"], ["queries", "queries_per_context", "final_test_error",
                                             "unreachable_mass"])
    tails = np.cumsum(masses[::-1])[::-1]
    for r in agg:
        g = int(np.argmin(np.abs(tails - r["final_test_error"])))
        ctx.notes.append(f"{r['arm']}: the final error {r['final_test_error']:.3f} sits at the mass {tails[g]:.3f} "
                         f"of the groups with α ≤ {p['alphas'][g]:g}" if abs(tails[g] - r["final_test_error"]) < 0.05
                         else f"{r['arm']}: the final error {r['final_test_error']:.3f} is below every group's tail "
                         "mass: all groups are being learned.")
        ctx.notes.append(f"{r['arm']}: final test error {r['final_test_error']:.3f} after {r['queries']:.3g} queries "
                         f"({r['queries_per_context']:.3g} per context); mass of groups with α_g < 1/(queries per "
                         f"context): {r['unreachable_mass']:.3f}.")
    _plot(ctx, curves, masses)
    ctx.write(markdown_table(agg, ["arm", "queries", "queries_per_context", "final_test_error", "unreachable_mass",
                                   "seeds"]))


def _plot(ctx, curves, masses):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.6, 4.4))
    colours = {"orm_pg": "tab:blue", "prm_explore": "tab:orange"}
    for (arm, seed), (q, err) in curves.items():
        keep = q > 0
        ax.plot(q[keep], err[keep], color=colours[arm], alpha=0.8, label=arm if seed == 0 else None)
    tail = np.cumsum(masses[::-1])[::-1]          # mass of groups g, g+1, … (the harder ones)
    for a, m in zip(ctx.params["alphas"], tail):
        ax.axhline(m, color="grey", ls=":", lw=1)
        ax.text(0.99, m, f"groups with α ≤ {a:g}: mass {m:.2f}", fontsize=7, va="bottom", ha="right",
                color="grey", transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_xlabel("reward queries (ORM: outcome checks; PRM: prefix checks)")
    ax.set_ylabel("exact test error 1 − E p(y*|x)")
    ax.set_title("Staircase base: error plateaus at the unreachable mass")
    ax.legend(fontsize=8, loc="lower left")
    ctx.figure(fig, "staircase")
    plt.close(fig)
