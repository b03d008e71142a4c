"""mistakes — total online mistakes under uniform behaviour against k^N/γ² (docs/theory.md, mistake bounds).

The claim is about the *total* number of mistakes: Õ(k^N/γ²) for outcome-reward PG with uniform behaviour, and
Ω(k^N/(Nγ²)) for any algorithm on the independent-cells instance. So every instance runs for the same fixed
horizon H ≥ ``horizon_factor`` × the largest k^N/γ² of the grid — a horizon that grew with k^N/γ² would give
slope 1 even to a learner that never learns. Each instance uses its exact margin γ = 1/√(M·N) (M is rounded
from the nominal γ). A non-learning control (the same PG with a vanishing constant rate) runs on every
instance: it must fail the flattening and slope checks that the learner has to pass.
"""
import itertools
import math

import numpy as np

from ..tasks import CellsTask
from ..trace import read_table
from .common import fit_slope, markdown_table, mean_over_seeds, pyplot

CONTROL = {"algo.lr_rule": "constant", "algo.lr": 1e-12}


def instances(p):
    """(k, N, nominal γ, exact γ, k^N/γ²) of every grid point."""
    out = []
    for k, N, g in itertools.product(p["k"], p["N"], p["gamma"]):
        exact = CellsTask(k, N, gamma=g).gamma
        out.append((k, N, g, exact, k ** N / exact ** 2))
    return out


def horizon(p):
    return int(math.ceil(p["horizon_factor"] * max(s for *_, s in instances(p))))


def _register(ctx, p, H):
    ctx.predict("flattening", "share of the learner's expected mistakes made in the second half of the "
                "horizon, every instance (mean over seeds)",
                "≤ ln 2 / (1 + ln(H·γ²/k^N)) ≈ 0.12 if the error falls like k^N/(γ² t) (the log factor), 0 if "
                "the total is bounded",
                f"≤ {p['tol_flat']} on every instance",
                "the non-learning control makes ≈ ½ of its mistakes in the second half and must exceed the "
                "tolerance on every instance")
    ctx.predict("slope", "log-log slope of total expected mistakes M(H) against exact k^N/γ² across the grid "
                f"(H = {H} for every instance)", "1", f"± {p['tol_slope']}",
                "the control's M(H) ≈ H(1 − k^−N) is nearly flat in k^N/γ²: its slope must fall outside the "
                "band")
    ctx.predict("bounds", "M(H) against the lower rate k^N/(Nγ²) and the upper rate k^N/γ², every instance",
                "between the two rates up to constants",
                f"{p['lower_const']}·k^N/(Nγ²) ≤ M(H) ≤ {p['upper_const']}·k^N/γ²",
                "the control exceeds the upper line on the instances whose H(1 − k^−N) is above it")


def run(ctx):
    p = ctx.params
    H = horizon(p)
    _register(ctx, p, H)
    curves = {}
    with ctx.stage(f"PG with uniform behaviour, its non-learning control, and the N = 1 perceptron (H = {H})"):
        for (k, N, g, exact, scale), seed in itertools.product(instances(p), ctx.seeds):
            cell = {"k": k, "N": N, "gamma": g}
            over = {"task.k": k, "task.N": N, "task.gamma": g, "task.seed": seed, "run.seed": seed,
                    "run.rounds": H, "run.eval_every": max(1, H // p["curve_points"])}
            arms = [("pg_uniform", {}), ("control", CONTROL)] + ([("perceptron", {"algo.name": "perceptron"})]
                                                                 if N == 1 else [])
            for arm, extra in arms:
                s, folder = ctx.run_arm(arm, cell, seed, {**over, **extra})
                ev = read_table(folder / "eval").to_pydict()
                t, m = np.array(ev["round"]), np.array(ev["mistakes_expected"])
                half = float(np.interp(H / 2, t, m))
                curves[arm, k, N, g, seed] = (t, m)
                ctx.record(arm, cell, seed, gamma_exact=exact, k_N_over_gamma2=scale, rounds=H,
                           mistakes_expected=s["mistakes_expected"], mistakes_sampled=s["mistakes_sampled"],
                           second_half_share=(s["mistakes_expected"] - half) / max(s["mistakes_expected"], 1e-300),
                           updates=s["updates"], final_test_error=s["final_test_error"],
                           novikoff_bound=2.0 / exact ** 2 if arm == "perceptron" else None)
    agg = mean_over_seeds(ctx.rows, ["arm", "k", "N", "gamma"],
                          ["gamma_exact", "k_N_over_gamma2", "mistakes_expected", "mistakes_sampled",
                           "second_half_share", "final_test_error"])
    agg.sort(key=lambda r: (r["arm"], r["k_N_over_gamma2"]))
    for r in agg:
        r["ratio_upper"] = r["mistakes_expected"] / r["k_N_over_gamma2"]
        r["ratio_lower"] = r["mistakes_expected"] * r["N"] / r["k_N_over_gamma2"]
    slopes = {arm: fit_slope([r["k_N_over_gamma2"] for r in ctx.rows if r["arm"] == arm],
                             [r["mistakes_expected"] for r in ctx.rows if r["arm"] == arm],
                             [r["seed"] for r in ctx.rows if r["arm"] == arm],
                             f"{arm}: log M(H) vs log k^N/γ²", "1" if arm == "pg_uniform" else "≈ 0 (control)")
              for arm in ("pg_uniform", "control")}
    _verdicts(ctx, p, agg, slopes)
    _plot(ctx, p, agg, curves, H)
    ctx.write(markdown_table(agg, ["arm", "k", "N", "gamma", "gamma_exact", "k_N_over_gamma2", "mistakes_expected",
                                   "ratio_lower", "ratio_upper", "second_half_share", "final_test_error",
                                   "seeds"]), list(slopes.values()))


def _verdicts(ctx, p, agg, slopes):
    pg = [r for r in agg if r["arm"] == "pg_uniform"]
    ctl = [r for r in agg if r["arm"] == "control"]
    worst = max(r["second_half_share"] for r in pg)
    ctl_min = min(r["second_half_share"] for r in ctl)
    ctx.verdict("flattening", worst <= p["tol_flat"] and ctl_min > p["tol_flat"],
                f"learner: at most {worst:.3g} of the mistakes in the second half; control: at least {ctl_min:.3g}")
    s, c = slopes["pg_uniform"], slopes["control"]
    in_band = lambda v: abs(v - 1.0) <= p["tol_slope"]  # noqa: E731
    ctx.verdict("slope", in_band(s["slope"]) and not in_band(c["slope"]),
                f"learner slope {s['slope']:.3f} (95% CI [{s['lo']:.3f}, {s['hi']:.3f}]); control slope "
                f"{c['slope']:.3f}")
    lo = min(r["ratio_lower"] for r in pg)
    hi = max(r["ratio_upper"] for r in pg)
    ctl_over = sum(r["ratio_upper"] > p["upper_const"] for r in ctl)
    ctx.verdict("bounds", lo >= p["lower_const"] and hi <= p["upper_const"],
                f"M(H)/(k^N/(Nγ²)) ≥ {lo:.3g} and M(H)/(k^N/γ²) ≤ {hi:.3g} over the learner's instances; the "
                f"control is above the upper line on {ctl_over} of {len(ctl)} instances")
    ctx.notes.append(f"the learner's total mistakes M(H) lie between {lo:.3g}·k^N/(Nγ²) and {hi:.3g}·k^N/γ²; "
                     f"fitted slope {s['slope']:.2f} against {c['slope']:.2f} for the non-learning control.")
    perc = [r for r in agg if r["arm"] == "perceptron"]
    if perc:
        worst_p = max(r["mistakes_sampled"] * r["gamma_exact"] ** 2 / 2.0 for r in perc)
        ctx.notes.append(f"N = 1 full-information perceptron: mistakes / Novikoff bound 2/γ² at most {worst_p:.3g}; "
                         "bandit PG pays the extra factor k for learning from one bit per round.")


def _plot(ctx, p, agg, curves, H):
    plt = pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12.0, 4.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    seed = ctx.seeds[0]
    cells = sorted({(k, N, g) for arm, k, N, g, s in curves if arm == "pg_uniform"},
                   key=lambda c: c[0] ** c[1] / c[2] ** 2)
    for i, (k, N, g) in enumerate(cells):
        col = colours[i % len(colours)]
        for arm, style in (("pg_uniform", "-"), ("control", ":")):
            t, m = curves[arm, k, N, g, seed]
            ax0.plot(t / H, m / m[-1], style, color=col, lw=1,
                     label=f"k={k}, N={N}, γ={g:g}" if arm == "pg_uniform" else None)
    ax0.set_xlabel("round t / H")
    ax0.set_ylabel("cumulative expected mistakes M(t) / M(H)")
    ax0.set_title(f"Mistakes flatten (solid: PG; dotted: control), seed {seed}")
    ax0.legend(fontsize=6, ncol=2)
    pg = [r for r in agg if r["arm"] == "pg_uniform"]
    x = np.array([r["k_N_over_gamma2"] for r in pg])
    for N in sorted({r["N"] for r in pg}):
        sel = [r for r in pg if r["N"] == N]
        ax1.scatter([r["k_N_over_gamma2"] for r in sel], [r["mistakes_expected"] for r in sel],
                    label=f"PG, uniform, N={N}")
    ctl = [r for r in agg if r["arm"] == "control"]
    ax1.scatter([r["k_N_over_gamma2"] for r in ctl], [r["mistakes_expected"] for r in ctl], marker="s",
                facecolors="none", edgecolors="grey", label="non-learning control")
    grid = np.geomspace(x.min(), x.max(), 50)
    ax1.plot(grid, p["upper_const"] * grid, "k-", lw=1, label=f"{p['upper_const']:g}·k^N/γ² (upper rate)")
    for N in sorted({r["N"] for r in pg}):
        ax1.plot(grid, p["lower_const"] * grid / N, "k--", lw=0.8, alpha=0.3 + 0.7 * N / max(p["N"]),
                 label=f"{p['lower_const']:g}·k^N/(Nγ²), N={N} (lower rate)")
    perc = [r for r in agg if r["arm"] == "perceptron"]
    if perc:
        ax1.scatter([r["k_N_over_gamma2"] for r in perc], [r["mistakes_sampled"] for r in perc], marker="x",
                    color="k", label="perceptron (full information), N=1")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("k^N / γ² (exact γ)")
    ax1.set_ylabel(f"total expected mistakes at H = {H}")
    ax1.set_title("Total mistakes against the rate, one horizon for all")
    ax1.legend(fontsize=6)
    ctx.figure(fig, "mistakes")
    plt.close(fig)
