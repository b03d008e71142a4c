"""sgd-lr — γ²T·test error vs N for the adaptive and the constant learning rate (docs/theory.md §4.1, §6).

The prediction comes from the rates actually used. On a cells instance each of the M = 1/(Nγ²) contexts is seen
about T/M = NTγ² times, and each of its N positions' error falls like 1/(η·NTγ²), so the sequence error is
err ≈ c/(η·γ²T): γ²T·err ≈ c/η. The adaptive rate η_t = 1/(4 + 2‖g_t‖²) tends to 1/4 as the gradient
vanishes; the constant rate is 1/(4 + 4N). So γ²T·err is flat in N for the adaptive rate and the error ratio
constant/adaptive grows like 1 + N. A third arm, the constant rate 1/4 (the adaptive rate's limit), is the
control: it must track the adaptive arm, so a gap that came from anything but the rate's size would show.
"""
import itertools

import numpy as np

from ..tasks import CellsTask
from .common import fit_slope, markdown_table, mean_over_seeds, pyplot

ARMS = ("adaptive", "constant", "limit")
LABELS = {"adaptive": "adaptive η = 1/(4+2‖g‖²)", "constant": "constant η = 1/(4+4N)",
          "limit": "constant η = 1/4 (control)"}


def predicted_ratio_slope(Ns):
    """Least-squares slope of log(1 + N) against log N over the grid."""
    return float(np.polyfit(np.log(Ns), np.log1p(np.asarray(Ns, float)), 1)[0])


def _rate(arm, N):
    return {"adaptive": ("adaptive", 1.0), "constant": ("constant", 1.0 / (4 + 4 * N)),
            "limit": ("constant", 0.25)}[arm]


def run(ctx):
    p = ctx.params
    T = p["T"]
    pred = predicted_ratio_slope(p["N"])
    ctx.predict("ratio_slope", "log-log slope over N of the error ratio constant(1/(4+4N)) / adaptive (last "
                "iterate, mean over seeds)", f"{pred:.3f} (the slope of log(1+N) over N = {p['N']})",
                f"± {p['tol_ratio_slope']}", "an adaptive rule that did not tend to 1/4, or a constant rate of "
                "another size, moves the slope off log(1+N)")
    ctx.predict("adaptive_flat", "log-log slope over N of γ²T·err for the adaptive rate (exact γ)", "0",
                f"± {p['tol_flat_slope']}", "the constant 1/(4+4N) arm's slope is the same fit and must lie "
                "outside the band")
    ctx.predict("limit_control", "error ratio of the constant rate 1/4 to the adaptive rate, every N",
                "1 (the adaptive rate's limit)", f"within [1/{p['tol_limit']}, {p['tol_limit']}]",
                "the constant 1/(4+4N) arm at the largest N must lie outside this band")
    with ctx.stage("supervised SGD: adaptive rate, constant 1/(4+4N), constant 1/4"):
        for N, seed, arm in itertools.product(p["N"], ctx.seeds, ARMS):
            gamma = CellsTask(p["k"], N, gamma=p["gamma"]).gamma
            rule, lr = _rate(arm, N)
            over = {"task.k": p["k"], "task.N": N, "task.gamma": p["gamma"], "task.seed": seed,
                    "run.seed": seed, "run.rounds": T, "run.eval_every": max(1, T // 20), "algo.lr_rule": rule,
                    "algo.lr": lr}
            s, _ = ctx.run_arm(arm, {"N": N}, seed, over)
            ctx.record(arm, {"N": N}, seed, gamma=gamma, T=T, lr=lr if rule == "constant" else None,
                       test_error=s["final_test_error"], test_error_avg=s["final_test_error_avg"],
                       scaled_error=gamma ** 2 * T * s["final_test_error"],
                       scaled_error_avg=gamma ** 2 * T * s["final_test_error_avg"])
    agg = mean_over_seeds(ctx.rows, ["arm", "N"], ["gamma", "test_error", "test_error_avg", "scaled_error",
                                                   "scaled_error_avg"])
    agg.sort(key=lambda r: (r["arm"], r["N"]))
    by = {(r["arm"], r["N"]): r for r in agg}
    for r in agg:
        r["ratio_to_adaptive"] = r["test_error"] / by["adaptive", r["N"]]["test_error"]
        r["predicted_ratio"] = {"adaptive": 1.0, "constant": 1.0 + r["N"], "limit": 1.0}[r["arm"]]
    slopes = [fit_slope([r["N"] for r in ctx.rows if r["arm"] == arm],
                        [r["scaled_error"] for r in ctx.rows if r["arm"] == arm],
                        [r["seed"] for r in ctx.rows if r["arm"] == arm], f"{arm}: log γ²T·err vs log N",
                        "0" if arm != "constant" else f"{pred:.3f} (log(1+N))") for arm in ARMS]
    ratio = fit_slope(p["N"], [by["constant", N]["ratio_to_adaptive"] for N in p["N"]], [0] * len(p["N"]),
                      "log (constant / adaptive error) vs log N", f"{pred:.3f} (log(1+N))")
    _verdicts(ctx, p, pred, by, slopes, ratio)
    _plot(ctx, agg)
    ctx.write(markdown_table(agg, ["arm", "N", "gamma", "test_error", "test_error_avg", "scaled_error",
                                   "ratio_to_adaptive", "predicted_ratio", "seeds"]), slopes + [ratio])


def _verdicts(ctx, p, pred, by, slopes, ratio):
    ctx.verdict("ratio_slope", abs(ratio["slope"] - pred) <= p["tol_ratio_slope"],
                f"slope {ratio['slope']:.3f} against the predicted {pred:.3f}; ratios " +
                ", ".join(f"N={N}: {by['constant', N]['ratio_to_adaptive']:.2f} (1+N = {1 + N})" for N in p["N"]))
    adaptive, constant = slopes[0], slopes[1]
    ctx.verdict("adaptive_flat", abs(adaptive["slope"]) <= p["tol_flat_slope"] < abs(constant["slope"]),
                f"adaptive slope {adaptive['slope']:.3f} (95% CI [{adaptive['lo']:.3f}, {adaptive['hi']:.3f}]); "
                f"constant 1/(4+4N) slope {constant['slope']:.3f}")
    band = lambda v: 1.0 / p["tol_limit"] <= v <= p["tol_limit"]  # noqa: E731
    lim = [by["limit", N]["ratio_to_adaptive"] for N in p["N"]]
    ctl = by["constant", max(p["N"])]["ratio_to_adaptive"]
    ctx.verdict("limit_control", all(band(v) for v in lim) and not band(ctl),
                f"constant-1/4 / adaptive ratios {', '.join(f'{v:.2f}' for v in lim)}; the constant 1/(4+4N) arm "
                f"at N = {max(p['N'])}: {ctl:.2f}")
    ctx.notes.append(f"γ²T·err: adaptive slope {adaptive['slope']:.2f}, constant 1/(4+4N) slope "
                     f"{constant['slope']:.2f}; the error ratio grows with slope {ratio['slope']:.2f} against "
                     f"log(1+N)'s {pred:.2f}.")


def _plot(ctx, agg):
    plt = pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11.0, 4.4))
    for arm, style in (("adaptive", "o-"), ("constant", "s--"), ("limit", "^:")):
        rows = [r for r in agg if r["arm"] == arm]
        ax0.plot([r["N"] for r in rows], [r["scaled_error"] for r in rows], style, label=LABELS[arm])
        ax1.plot([r["N"] for r in rows], [r["ratio_to_adaptive"] for r in rows], style, label=LABELS[arm])
    Ns = np.array(sorted({r["N"] for r in agg}), float)
    ax1.plot(Ns, 1 + Ns, "k-", lw=1, label="1 + N (predicted, constant / adaptive)")
    for ax in (ax0, ax1):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("response length N (tokens)")
        ax.legend(fontsize=7)
    ax0.set_ylabel("γ²T · test error (last iterate)")
    ax1.set_ylabel("test error / adaptive arm's")
    ax0.set_title(f"SGD learning rates (T = {ctx.params['T']} rounds)")
    ax1.set_title("Error ratio against the prediction 1 + N")
    ctx.figure(fig, "sgd-lr")
    plt.close(fig)
