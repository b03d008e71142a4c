"""mistakes — online mistakes under uniform behaviour against k^N/γ² (SPEC §6)."""
import itertools

import numpy as np

from .common import fit_slope, markdown_table, mean_over_seeds, pyplot


def run(ctx):
    p = ctx.params
    with ctx.stage("PG with uniform behaviour and the N = 1 perceptron"):
        for k, N, gamma, seed in itertools.product(p["k"], p["N"], p["gamma"], ctx.seeds):
            scale = k ** N / gamma ** 2
            rounds = int(np.ceil(p["horizon"] * scale))
            cell = {"k": k, "N": N, "gamma": gamma}
            over = {"task.k": k, "task.N": N, "task.gamma": gamma, "task.seed": seed, "run.seed": seed,
                    "run.rounds": rounds, "run.eval_every": rounds}
            s, _ = ctx.run_arm("pg_uniform", cell, seed, over)
            ctx.record("pg_uniform", cell, seed, k_N_over_gamma2=scale, rounds=rounds,
                       mistakes_expected=s["mistakes_expected"], mistakes_sampled=s["mistakes_sampled"],
                       updates=s["updates"], final_test_error=s["final_test_error"])
            if N == 1:
                s, _ = ctx.run_arm("perceptron", cell, seed, {**over, "algo.name": "perceptron"})
                ctx.record("perceptron", cell, seed, k_N_over_gamma2=scale, rounds=rounds,
                           mistakes_expected=s["mistakes_expected"], mistakes_sampled=s["mistakes_sampled"],
                           updates=s["updates"], final_test_error=s["final_test_error"],
                           novikoff_bound=2.0 / gamma ** 2)
    pg = [r for r in ctx.rows if r["arm"] == "pg_uniform"]
    slope_e = fit_slope([r["k_N_over_gamma2"] for r in pg], [r["mistakes_expected"] for r in pg],
                        [r["seed"] for r in pg], "log expected mistakes vs log k^N/γ²", "1 (between the "
                        "Ω(k^N/(Nγ²)) and Õ(k^N/γ²) lines)")
    slope_s = fit_slope([r["k_N_over_gamma2"] for r in pg], [r["mistakes_sampled"] for r in pg],
                        [r["seed"] for r in pg], "log sampled mistakes vs log k^N/γ²", "1")
    agg = mean_over_seeds(ctx.rows, ["arm", "k", "N", "gamma"], ["k_N_over_gamma2", "mistakes_expected",
                                                                 "mistakes_sampled", "final_test_error"])
    agg.sort(key=lambda r: (r["arm"], r["k_N_over_gamma2"]))
    for r in agg:
        r["ratio"] = r["mistakes_expected"] / r["k_N_over_gamma2"]
    ratios = [r["ratio"] for r in agg if r["arm"] == "pg_uniform"]
    ctx.notes.append(f"expected mistakes / (k^N/γ²) ranges over [{min(ratios):.3g}, {max(ratios):.3g}] across "
                     f"the grid; fitted log-log slope {slope_e['slope']:.2f} "
                     f"(95% CI [{slope_e['lo']:.2f}, {slope_e['hi']:.2f}]), theory 1.")
    perc = [r for r in agg if r["arm"] == "perceptron"]
    if perc:
        worst = max(r["mistakes_sampled"] * r["gamma"] ** 2 / 2.0 for r in perc)
        ctx.notes.append(f"N = 1 full-information perceptron: mistakes / Novikoff bound 2/γ² at most {worst:.3g}; "
                         "bandit PG pays the extra factor k for learning from one bit per round.")
    _plot(ctx, agg)
    ctx.write(markdown_table(agg, ["arm", "k", "N", "gamma", "k_N_over_gamma2", "mistakes_expected",
                                   "mistakes_sampled", "ratio", "final_test_error", "seeds"]), [slope_e, slope_s])


def _plot(ctx, agg):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    pg = [r for r in agg if r["arm"] == "pg_uniform"]
    x = np.array([r["k_N_over_gamma2"] for r in pg])
    for N in sorted({r["N"] for r in pg}):
        sel = [r for r in pg if r["N"] == N]
        ax.scatter([r["k_N_over_gamma2"] for r in sel], [r["mistakes_expected"] for r in sel], label=f"PG, uniform, N={N}")
    grid = np.geomspace(x.min(), x.max(), 50)
    ax.plot(grid, grid, "k-", lw=1, label="k^N/γ² (upper rate, constant 1)")
    nmax = max(r["N"] for r in pg)
    ax.plot(grid, grid / nmax, "k--", lw=1, label=f"k^N/(Nγ²), N={nmax} (lower rate)")
    perc = [r for r in agg if r["arm"] == "perceptron"]
    if perc:
        ax.scatter([r["k_N_over_gamma2"] for r in perc], [r["mistakes_sampled"] for r in perc], marker="x",
                   color="k", label="perceptron (full information), N=1")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k^N / γ²")
    ax.set_ylabel("online mistakes (expected, Σ 1 − p(y*))")
    ax.set_title("Mistakes of outcome-reward PG with uniform exploration")
    ax.legend(fontsize=8)
    ctx.figure(fig, "mistakes")
    plt.close(fig)
