"""queries — queries to reach 1 − ε grow like 1/α + 1/ε for best-of-m and like 1/(αε) for the fixed
mixture with one query per round (docs/theory.md §4.3, §6).

The two laws are only told apart on a grid where 1/α ≫ 1/ε at one corner and 1/ε ≫ 1/α at the other, so the
runs cover the full α × ε grid. Each arm's queries are fitted by the additive law Q = a/α + b/ε + c (a, b, c ≥ 0)
and the multiplicative law Q = c/(αε), by least squares on log Q (the queries span decades), and compared by
AIC = n·log(RSS/n) + 2·(parameters): the law with the lower AIC is the one the arm follows.
"""
import itertools
import math

import numpy as np
from scipy import optimize

from .common import first_reaching, markdown_table, mean_over_seeds, pyplot

ARMS = {"best_of_m": {"algo.name": "best_of_m"},
        "mixture_pg": {"algo.name": "pg", "algo.behaviour": "mixture"}}
EXPECTED = {"best_of_m": "additive", "mixture_pg": "multiplicative"}


def fit_laws(alpha, eps, queries):
    """Fit both laws to points (α, ε, Q) on log Q. Returns {law: {"params", "rss", "aic", "n"}}."""
    a, e, q = (np.asarray(v, float) for v in (alpha, eps, queries))
    y, n = np.log(q), len(q)

    def additive(theta):
        return np.log(np.exp(theta[0]) / a + np.exp(theta[1]) / e + np.exp(theta[2])) - y

    start = np.log(np.maximum([np.median(q * a) / 2, np.median(q * e) / 2, q.min() / 4], 1e-9))
    add = optimize.least_squares(additive, start, method="lm" if n > 3 else "trf")
    log_c = float(np.mean(y + np.log(a) + np.log(e)))       # the one-parameter law's least-squares solution
    mult_res = log_c - np.log(a) - np.log(e) - y
    out = {}
    for law, res, params, k in (("additive", additive(add.x), dict(zip("abc", np.exp(add.x).tolist())), 3),
                                ("multiplicative", mult_res, {"c": math.exp(log_c)}, 1)):
        rss = float(np.sum(res ** 2))
        out[law] = {"params": params, "rss": rss, "aic": n * math.log(max(rss, 1e-300) / n) + 2 * k, "n": n}
    return out


def run(ctx):
    p = ctx.params
    for arm, law in EXPECTED.items():
        other = "multiplicative" if law == "additive" else "additive"
        ctx.predict(f"{arm}_{law}", f"{arm}: AIC of the {other} law minus AIC of the {law} law, fitted to the "
                    f"queries over the α × ε grid (α = {p['alpha']}, ε = {p['eps']})",
                    f"> 0: the {law} law fits", f"≥ {p['min_delta_aic']}",
                    "the other arm follows the other law, so the same comparison must come out the other way there")
    with ctx.stage("best-of-m and fixed-mixture PG to test error ε over the α × ε grid"):
        for alpha, eps, seed, arm in itertools.product(p["alpha"], p["eps"], ctx.seeds, ARMS):
            over = {**ARMS[arm], "base.alpha": alpha, "algo.m": math.ceil(p["m_factor"] / alpha),
                    "task.seed": seed, "run.seed": seed, "run.rounds": p["max_rounds"],
                    "run.eval_every": p["eval_every"], "run.target_error": eps}
            s, folder = ctx.run_arm(arm, {"alpha": alpha, "eps": eps}, seed, over)
            q = first_reaching(folder, eps, "orm_queries")
            ctx.record(arm, {"alpha": alpha, "eps": eps}, seed, queries=q, reached=q is not None,
                       rounds=s["rounds"], inv_alpha=1 / alpha, inv_eps=1 / eps)
    agg = mean_over_seeds(ctx.rows, ["arm", "alpha", "eps"], ["queries", "rounds"])
    for r in agg:
        r["reached"] = sum(x["reached"] for x in ctx.rows if x["arm"] == r["arm"] and x["alpha"] == r["alpha"]
                           and x["eps"] == r["eps"])
    agg.sort(key=lambda r: (r["arm"], -r["alpha"], -r["eps"]))
    missed = [r for r in ctx.rows if not r["reached"]]
    if missed:
        ctx.notes.append(f"{len(missed)} run(s) did not reach ε within max_rounds = {p['max_rounds']}; cells with a "
                         "missed seed are left out of the fits.")
    fits = {}
    for arm in ARMS:
        pts = [r for r in agg if r["arm"] == arm and r["reached"] == len(ctx.seeds)]
        fits[arm] = fit_laws([r["alpha"] for r in pts], [r["eps"] for r in pts], [r["queries"] for r in pts])
    _verdicts(ctx, p, fits)
    _plot(ctx, agg, fits)
    rows = [{"arm": arm, "law": law, **{k: f[k] for k in ("n", "rss", "aic")},
             "params": ", ".join(f"{k}={v:.3g}" for k, v in f["params"].items())}
            for arm, laws in fits.items() for law, f in laws.items()]
    ctx.write(markdown_table(agg, ["arm", "alpha", "eps", "queries", "rounds", "reached", "seeds"]) + "\n\n" +
              markdown_table(rows, ["arm", "law", "n", "rss", "aic", "params"]))


def _verdicts(ctx, p, fits):
    for arm, law in EXPECTED.items():
        other = "multiplicative" if law == "additive" else "additive"
        f = fits[arm]
        delta = f[other]["aic"] - f[law]["aic"]
        ctx.verdict(f"{arm}_{law}", delta >= p["min_delta_aic"],
                    f"ΔAIC = {delta:.2f} (AIC {law} {f[law]['aic']:.2f}, {other} {f[other]['aic']:.2f}; "
                    f"{f[law]['n']} grid cells)")


def _plot(ctx, agg, fits):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.4))
    for ax, arm in zip(axes, ARMS):
        for i, alpha in enumerate(sorted({r["alpha"] for r in agg}, reverse=True)):
            rows = sorted([r for r in agg if r["arm"] == arm and r["alpha"] == alpha and r["queries"]],
                          key=lambda r: -r["eps"])
            if not rows:
                continue
            line, = ax.plot([1 / r["eps"] for r in rows], [r["queries"] for r in rows], "o", label=f"α = {alpha:g}")
            inv_e = np.geomspace(min(1 / r["eps"] for r in agg), max(1 / r["eps"] for r in agg), 30)
            a, b, c = (fits[arm]["additive"]["params"][k] for k in "abc")
            ax.plot(inv_e, a / alpha + b * inv_e + c, "-", color=line.get_color(), lw=1)
            ax.plot(inv_e, fits[arm]["multiplicative"]["params"]["c"] * inv_e / alpha, ":", color=line.get_color(),
                    lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("1/ε")
        ax.set_ylabel("ORM queries to reach test error ≤ ε")
        ax.set_title(f"{arm} (solid: a/α + b/ε + c; dotted: c/(αε))")
        ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.figure(fig, "queries")
    plt.close(fig)
