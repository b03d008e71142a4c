"""queries — queries to reach 1 − ε grow like 1/α + 1/ε for best-of-m and like 1/(αε) for the fixed
mixture with one query per round (SPEC §4.3, §6)."""
import itertools
import math

from .common import first_reaching, fit_slope, markdown_table, mean_over_seeds, pyplot

ARMS = {"best_of_m": {"algo.name": "best_of_m"},
        "mixture_pg": {"algo.name": "pg", "algo.behaviour": "mixture"}}


def run(ctx):
    p = ctx.params
    cells = [("alpha", a, p["eps_fixed"]) for a in p["alpha"]] + [("eps", p["alpha_fixed"], e) for e in p["eps"]]
    with ctx.stage("best-of-m and fixed-mixture PG to test error ε"):
        for (sweep, alpha, eps), seed, arm in itertools.product(cells, ctx.seeds, ARMS):
            over = {**ARMS[arm], "base.alpha": alpha, "algo.m": math.ceil(p["m_factor"] / alpha),
                    "task.seed": seed, "run.seed": seed, "run.rounds": p["max_rounds"],
                    "run.eval_every": p["eval_every"], "run.target_error": eps}
            s, folder = ctx.run_arm(arm, {"sweep": sweep, "alpha": alpha, "eps": eps}, seed, over)
            q = first_reaching(folder, eps, "orm_queries")
            ctx.record(arm, {"sweep": sweep, "alpha": alpha, "eps": eps}, seed, queries=q,
                       reached=q is not None, rounds=s["rounds"], inv_alpha=1 / alpha, inv_eps=1 / eps)
    slopes = []
    for arm, (th_a, th_e) in (("best_of_m", ("≤ 1 (additive: 1/α + 1/ε)", "≤ 1 (additive)")),
                              ("mixture_pg", ("1 (multiplicative: 1/(αε))", "1 (multiplicative)"))):
        ra = [r for r in ctx.rows if r["arm"] == arm and r["sweep"] == "alpha" and r["queries"]]
        re_ = [r for r in ctx.rows if r["arm"] == arm and r["sweep"] == "eps" and r["queries"]]
        slopes.append(fit_slope([r["inv_alpha"] for r in ra], [r["queries"] for r in ra], [r["seed"] for r in ra],
                                f"{arm}: log queries vs log 1/α (ε = {p['eps_fixed']})", th_a))
        slopes.append(fit_slope([r["inv_eps"] for r in re_], [r["queries"] for r in re_], [r["seed"] for r in re_],
                                f"{arm}: log queries vs log 1/ε (α = {p['alpha_fixed']})", th_e))
    agg = mean_over_seeds(ctx.rows, ["arm", "sweep", "alpha", "eps"], ["queries", "rounds"])
    agg.sort(key=lambda r: (r["sweep"], r["arm"], r["alpha"], -r["eps"]))
    missed = [r for r in ctx.rows if not r["reached"]]
    if missed:
        ctx.notes.append(f"{len(missed)} run(s) did not reach ε within max_rounds = {p['max_rounds']}; they are "
                         "left out of the fits.")
    for sweep, key in (("alpha", "alpha"), ("eps", "eps")):
        pairs = {}
        for r in agg:
            if r["sweep"] == sweep and r["queries"]:
                pairs.setdefault(r[key], {})[r["arm"]] = r["queries"]
        ratios = [(v, d["mixture_pg"] / d["best_of_m"]) for v, d in sorted(pairs.items()) if len(d) == 2]
        if ratios:
            ctx.notes.append(f"mixture / best-of-m query ratio along the {sweep} sweep: " +
                             ", ".join(f"{key}={v:g}: {q:.2g}" for v, q in ratios))
    _plot(ctx, agg)
    ctx.write(markdown_table(agg, ["sweep", "arm", "alpha", "eps", "queries", "rounds", "seeds"]), slopes)


def _plot(ctx, agg):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for ax, sweep, key, fixed in ((axes[0], "alpha", "alpha", f"ε = {ctx.params['eps_fixed']}"),
                                  (axes[1], "eps", "eps", f"α = {ctx.params['alpha_fixed']}")):
        for arm, style in (("best_of_m", "o-"), ("mixture_pg", "s--")):
            rows = sorted([r for r in agg if r["sweep"] == sweep and r["arm"] == arm and r["queries"]],
                          key=lambda r: r[key])
            ax.plot([1 / r[key] for r in rows], [r["queries"] for r in rows], style, label=arm)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"1/{'α' if key == 'alpha' else 'ε'}")
        ax.set_ylabel("ORM queries to reach test error ≤ ε")
        ax.set_title(f"queries vs 1/{'α' if key == 'alpha' else 'ε'} ({fixed})")
        ax.legend(fontsize=8)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
    fig.tight_layout()
    ctx.figure(fig, "queries")
    plt.close(fig)
