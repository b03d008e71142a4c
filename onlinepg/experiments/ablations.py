"""ablations — the design choices the paper names, one at a time, on a cells instance with an exact margin
(docs/theory.md §6; the expected effects are reconstructions).

Every arm starts from the same base (``base.kind = "alpha"``: likelihood α on every context, each correct token
above 1/k) and counts its outcome queries until the exact test error is ε. Arms by ablation:

* ``iw_clip`` — PG from the fixed mixture ½q₀ + ½Unif with the importance weight p/q clipped to [1/ζ, ζ],
  ζ ∈ ``zetas``; the rate's bound grows like ζ². ζ = 1 clips every weight to 1, so it must reproduce the mixture arm
  without a weight bit for bit (the engine control).
* ``reward`` — on-policy PG with 0/1 against ±1 rewards: no worst-case gain under the margin model.
* ``baseline`` — the paper's batched mode (``pg_batch`` with Adagrad, as the paper's code) with no baseline, the
  batch mean across contexts (the paper's code), the per-context group mean (GRPO-style) and leave-one-out; the
  same queries per step.
* ``lr_rule`` and ``behaviour`` — Adagrad against the scalar adaptive rate, on-policy against ½q₀ + ½Unif exploration:
  reported as measured (the paper names them without a direction).

Then fig1's setting at a reduced scale (bigram teacher, mixture contexts, an Adagrad-pre-trained base, ``pg_batch``
with Adagrad and ±1 rewards as in the paper): the rewards (0/1 vs ±1) and baselines (none, batch mean, group mean,
leave-one-out) at one fixed budget of steps, measured by the final exact test error; the scalar adaptive rate against
Adagrad is reported. The per-round options (clipped weights, exploration mixtures) have no batched counterpart.
"""
import itertools

import numpy as np

from ..errors import ConfigError
from ..tasks import CellsTask
from ..trace import read_table
from .common import fit_slope, markdown_table, mean_over_seeds, pyplot
from .pretraining import queries_to

PG = {"algo.name": "pg", "algo.behaviour": "policy"}
MIXTURE = {"algo.name": "pg", "algo.behaviour": "mixture"}


def arms(p):
    """{ablation: {arm: overrides}} (the reference arm of an ablation first)."""
    batch = {"algo.name": "pg_batch", "algo.reward_type": "outcome", "algo.batch": p["batch"],
             "algo.lr_rule": "adagrad", "algo.lr": p["adagrad_lr"]}     # the paper's batched mode: Adagrad
    grouped = {**batch, "algo.group_size": p["group_size"]}
    return {
        "iw_clip": {"mixture_no_iw": MIXTURE,
                    **{f"zeta_{z:g}": {**MIXTURE, "algo.iw_clip": float(z)} for z in p["zetas"]}},
        "reward": {"reward_01": PG, "reward_pm1": {**PG, "algo.reward": "pm1"}},
        "baseline": {"none": batch, "batch_mean": {**batch, "algo.baseline": "batch_mean"},
                     "group_mean": {**grouped, "algo.baseline": "group_mean"},
                     "loo": {**grouped, "algo.baseline": "loo"}},
        "lr_rule": {"adaptive": PG, "adagrad": {**PG, "algo.lr_rule": "adagrad", "algo.lr": p["adagrad_lr"]}},
        "behaviour": {"on_policy": PG, "mixture": MIXTURE},
    }


def _register(ctx, p, rate):
    zs = [z for z in p["zetas"] if z > 1]
    ctx.predict("iw_clip_cost", "queries to error ε of PG from ½q₀ + ½Unif with the weight clipped to [1/ζ, ζ], "
                "over the ζ = 1 arm (mean over seeds)", "≤ ζ² (the bound's factor): " +
                ", ".join(f"ζ={z:g}: {z * z:g}" for z in zs), f"≤ {p['tol']}·ζ²",
                "ζ = 1 must reproduce the mixture arm without a weight exactly, on every seed")
    ctx.predict("reward_no_gain", "queries to ε with ±1 rewards over 0/1 rewards (on-policy PG, mean over seeds)",
                "≥ 1 (no gain under the margin model)", f"≥ 1/{p['tol']:g}",
                "every arm must reach ε within the cap (a non-learner does not)")
    ctx.predict("baseline_no_gain", "queries to ε with each baseline (batch mean, group mean, leave-one-out) over no "
                "baseline (pg_batch, mean over seeds)", "≥ 1 (no gain under the margin model)", f"≥ 1/{p['tol']:g}",
                "every arm must reach ε within the cap")
    if p["teacher_steps"]:
        ctx.predict("teacher_no_gain", f"fig1's setting reduced (bigram teacher, d = k = {p['teacher_d']}, N = "
                    f"{p['teacher_N']}, pg_batch with Adagrad, {p['teacher_steps']} steps of {p['teacher_batch']}): "
                    "final exact test error with ±1 over 0/1 rewards (no baseline), and with each baseline (batch "
                    "mean, group mean, leave-one-out) over none (±1 rewards), mean over seeds",
                    "≥ 1 (no gain under the margin model)", f"≥ 1/{p['tol']:g}",
                    "both reference arms must end below the base's error (a non-learner does not)")
    ctx.notes.append(f"the rate (1/α + 1/ε)/γ² = {rate:.4g} queries; every arm's cap is {p['cap_factor']:g}× it.")


def run(ctx):
    p = ctx.params
    task = CellsTask(p["k"], p["N"], gamma=p["gamma"])
    if p["alpha"] ** (1.0 / task.N) <= 1.0 / task.k:
        raise ConfigError(f"ablations: alpha^(1/N) = {p['alpha'] ** (1 / task.N):.3g} must exceed 1/k (else the "
                          "uniform half of the mixture sets the rate)")
    rate = (1.0 / p["alpha"] + 1.0 / p["eps"]) / task.gamma ** 2
    cap = int(p["cap_factor"] * rate)
    _register(ctx, p, rate)
    table = arms(p)
    with ctx.stage(f"{sum(map(len, table.values()))} arms × {len(ctx.seeds)} seeds to test error {p['eps']}"):
        for (abl, group), seed in itertools.product(table.items(), ctx.seeds):
            for arm, over in group.items():
                batched = over["algo.name"] == "pg_batch"
                per_round = p["batch"] if batched else 1
                run_over = {**over, "task.k": p["k"], "task.N": p["N"], "task.gamma": p["gamma"],
                            "base.alpha": p["alpha"], "task.seed": seed, "run.seed": seed,
                            "run.rounds": max(1, cap // per_round), "run.max_queries": cap,
                            "run.target_error": p["eps"],
                            "run.eval_every": max(1, p["eval_every"] // per_round)}
                s, folder = ctx.run_arm(arm, {"ablation": abl}, seed, run_over)
                ctx.record(arm, {"ablation": abl}, seed, queries=queries_to(folder, p["eps"], ("orm_queries",)),
                           final_test_error=s["final_test_error"], rounds=s["rounds"])
    agg = mean_over_seeds([r for r in ctx.rows if r["ablation"] in table], ["ablation", "arm"],
                          ["queries", "final_test_error"])
    reached = {(r["ablation"], r["arm"]): all(x["queries"] is not None for x in ctx.rows
                                              if x["arm"] == r["arm"] and x["ablation"] == r["ablation"])
               for r in agg}
    for r in agg:
        r["reached_all"] = reached[r["ablation"], r["arm"]]
        ref = next(a for a in agg if a["ablation"] == r["ablation"] and a["arm"] == next(iter(table[r["ablation"]])))
        r["ratio"] = r["queries"] / ref["queries"] if r["queries"] and ref["queries"] else None
    teacher = _teacher_block(ctx, p) if p["teacher_steps"] else []
    slope = _verdicts(ctx, p, agg, table)
    if teacher:
        _teacher_verdict(ctx, p, teacher)
    _plot(ctx, p, agg, table)
    cells_md = markdown_table(agg, ["ablation", "arm", "queries", "ratio", "reached_all", "final_test_error", "seeds"])
    teacher_md = markdown_table(teacher, ["ablation", "arm", "base_error", "final_test_error", "error_ratio", "seeds"])
    ctx.write(cells_md + ("\n\nfig1's setting, reduced (final exact test error after the same steps):\n\n" + teacher_md
                          if teacher else ""), [slope] if slope else ())


def _mean(agg, abl, arm):
    return next(r for r in agg if r["ablation"] == abl and r["arm"] == arm)


def _verdicts(ctx, p, agg, table):
    tol = p["tol"]
    same = all(a["queries"] == b["queries"] for a, b in zip(
        sorted((r for r in ctx.rows if r["arm"] == "mixture_no_iw"), key=lambda r: r["seed"]),
        sorted((r for r in ctx.rows if r["arm"] == "zeta_1"), key=lambda r: r["seed"])))
    one = _mean(agg, "iw_clip", "zeta_1")
    zs = [z for z in p["zetas"] if z > 1]
    ratios = {z: (_mean(agg, "iw_clip", f"zeta_{z:g}")["queries"] or float("inf")) / one["queries"]
              if one["queries"] else None for z in zs}
    ok = same and one["reached_all"] and all(r is not None and r <= tol * z * z and
                                             _mean(agg, "iw_clip", f"zeta_{z:g}")["reached_all"]
                                             for z, r in ratios.items())
    ctx.verdict("iw_clip_cost", ok, ", ".join(f"ζ={z:g}: {r:.3g}" for z, r in ratios.items()) +
                f"; ζ = 1 {'reproduces' if same else 'does NOT reproduce'} the unweighted mixture arm")
    for name, abl in (("reward_no_gain", "reward"), ("baseline_no_gain", "baseline")):
        rows = [r for r in agg if r["ablation"] == abl]
        ok = all(r["reached_all"] for r in rows) and all(r["ratio"] is not None and r["ratio"] >= 1 / tol
                                                         for r in rows)
        ctx.verdict(name, ok, ", ".join(f"{r['arm']}: {r['ratio']:.3g}" if r["ratio"] is not None else
                                        f"{r['arm']}: not reached" for r in rows))
    for abl in ("lr_rule", "behaviour"):
        rows = [r for r in agg if r["ablation"] == abl]
        ctx.notes.append(f"{abl} (reported, no check): " + ", ".join(
            f"{r['arm']} {r['queries']:.4g} queries" if r["queries"] else f"{r['arm']} not reached" for r in rows))
    rows = [r for r in ctx.rows if r["ablation"] == "iw_clip" and r["arm"].startswith("zeta_") and r["queries"]]
    if not rows:
        return None
    return fit_slope([float(r["arm"].split("_")[1]) for r in rows], [r["queries"] for r in rows],
                     [r["seed"] for r in rows], "iw_clip: log queries vs log ζ", "≤ 2 (the bound's ζ²)")


def _plot(ctx, p, agg, table):
    plt = pyplot()
    teacher = teacher_arms(p) if p["teacher_steps"] else {}
    fig, axes = plt.subplots(1, 3 if teacher else 2, figsize=(18.0 if teacher else 13.0, 4.6),
                             gridspec_kw={"width_ratios": [1, 2, 1.4] if teacher else [1, 2]})
    ax = axes[0]
    zs = np.array(p["zetas"], float)
    for seed in ctx.seeds:
        q = [next((r["queries"] for r in ctx.rows if r["seed"] == seed and r["arm"] == f"zeta_{z:g}"), None)
             for z in zs]
        ax.plot(zs, [np.nan if v is None else v for v in q], "o-", alpha=0.5, lw=0.8,
                label="PG from ½q₀ + ½Unif, clipped IW (one line per seed)" if seed == ctx.seeds[0] else None)
    one = _mean(agg, "iw_clip", "zeta_1")["queries"]
    if one:
        ax.plot(zs, one * zs ** 2, "k--", lw=1, label="ζ = 1 cost × ζ² (the bound's factor)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("clip ζ (weight p/q clipped to [1/ζ, ζ])")
    ax.set_ylabel(f"outcome queries to test error {p['eps']}")
    ax.set_title("Importance-weight clipping")
    ax.legend(fontsize=7)
    ax = axes[1]
    labels, x = [], 0
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (abl, group) in enumerate(table.items()):
        if abl == "iw_clip":
            continue
        for arm in group:
            vals = [r["queries"] for r in ctx.rows if r["ablation"] == abl and r["arm"] == arm and r["queries"]]
            ax.bar(x, np.mean(vals) if vals else 0, color=colours[i % len(colours)], alpha=0.6)
            ax.scatter([x] * len(vals), vals, color="k", s=8, zorder=3)
            labels.append(f"{abl}: {arm}")
            x += 1
        x += 0.5
    ax.set_xticks(_ticks(table), labels, fontsize=7, rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel(f"outcome queries to test error {p['eps']} (bars: mean; dots: seeds)")
    ax.set_title("Rewards, baselines, learning rate, exploration")
    if teacher:
        ax = axes[2]
        names = [(abl, arm) for abl, group in teacher.items() for arm in group]
        for i, (abl, arm) in enumerate(names):
            vals = [r["final_test_error"] for r in ctx.rows if r["ablation"] == abl and r["arm"] == arm]
            ax.bar(i, np.mean(vals), color=colours[list(teacher).index(abl) % len(colours)], alpha=0.6)
            ax.scatter([i] * len(vals), vals, color="k", s=8, zorder=3)
        base = [r["base_error"] for r in ctx.rows if r["ablation"] in teacher]
        ax.axhline(np.mean(base), color="grey", ls="--", lw=0.8, label="the base's error")
        ax.set_xticks(range(len(names)), [arm.replace("teacher_", "") for _, arm in names], fontsize=7, rotation=30)
        ax.set_ylabel(f"final exact test error after {p['teacher_steps']} steps")
        ax.set_title("fig1's setting, reduced (pg_batch, Adagrad)")
        ax.legend(fontsize=7)
    ctx.figure(fig, "ablations")
    plt.close(fig)


def _ticks(table):
    out, x = [], 0.0
    for abl, group in table.items():
        if abl == "iw_clip":
            continue
        for _ in group:
            out.append(x)
            x += 1
        x += 0.5
    return out


def teacher_arms(p):
    """{ablation: {arm: overrides}} of the reduced fig1 block (the reference arm of an ablation first)."""
    batch = {"algo.name": "pg_batch", "algo.reward_type": "outcome", "algo.batch": p["teacher_batch"],
             "algo.lr_rule": "adagrad", "algo.lr": p["adagrad_lr"], "algo.reward": "pm1"}
    grouped = {**batch, "algo.group_size": p["group_size"]}
    return {"teacher_reward": {"teacher_01": {**batch, "algo.reward": "01"}, "teacher_pm1": batch},
            "teacher_baseline": {"teacher_none": batch,
                                 "teacher_batch_mean": {**batch, "algo.baseline": "batch_mean"},
                                 "teacher_group_mean": {**grouped, "algo.baseline": "group_mean"},
                                 "teacher_loo": {**grouped, "algo.baseline": "loo"}},
            "teacher_lr_rule": {"teacher_adagrad": batch,
                                "teacher_adaptive": {**batch, "algo.lr_rule": "adaptive"}}}


def _teacher_block(ctx, p):
    """Every arm of ``teacher_arms`` from one Adagrad-pre-trained base per seed; returns the rows averaged over seeds."""
    table = teacher_arms(p)
    task = {"task.kind": "teacher", "task.d": p["teacher_d"], "task.k": p["teacher_d"], "task.N": p["teacher_N"],
            "task.contexts": "mixture", "task.centres": p["teacher_d"], "base.kind": "pretrain",
            "base.steps": p["teacher_base_steps"], "base.batch": 256, "base.lr": 0.1, "base.lr_rule": "adagrad"}
    with ctx.stage(f"fig1's setting reduced: {sum(map(len, table.values()))} arms × {len(ctx.seeds)} seeds, "
                   f"{p['teacher_steps']} steps"):
        for (abl, group), seed in itertools.product(table.items(), ctx.seeds):
            for arm, over in group.items():
                run_over = {**task, **over, "task.seed": seed, "run.seed": seed, "run.rounds": p["teacher_steps"],
                            "run.eval_every": p["teacher_steps"]}
                s, folder = ctx.run_arm(arm, {"ablation": abl}, seed, run_over)
                base_error = read_table(folder / "eval").to_pydict()["test_error"][0]
                ctx.record(arm, {"ablation": abl}, seed, base_error=base_error, final_test_error=s["final_test_error"])
    rows = [r for r in ctx.rows if r["ablation"] in table]
    agg = mean_over_seeds(rows, ["ablation", "arm"], ["base_error", "final_test_error"])
    for r in agg:
        ref = _mean(agg, r["ablation"], next(iter(table[r["ablation"]])))
        r["error_ratio"] = r["final_test_error"] / ref["final_test_error"] if ref["final_test_error"] else None
    return agg


def _teacher_verdict(ctx, p, agg):
    rows = [r for r in agg if r["ablation"] in ("teacher_reward", "teacher_baseline")]
    refs = [_mean(agg, "teacher_reward", "teacher_01"), _mean(agg, "teacher_baseline", "teacher_none")]
    learns = all(r["final_test_error"] < r["base_error"] for r in refs)
    ok = learns and all(r["error_ratio"] is not None and r["error_ratio"] >= 1 / p["tol"] for r in rows)
    ctx.verdict("teacher_no_gain", ok, ", ".join(f"{r['arm']}: {r['error_ratio']:.3g}" for r in rows) +
                "; references " + ("learn" if learns else "do NOT all learn") + " (" + ", ".join(
                    f"{r['arm']}: {r['base_error']:.3g} → {r['final_test_error']:.3g}" for r in refs) + ")")
    lr = [r for r in agg if r["ablation"] == "teacher_lr_rule"]
    ctx.notes.append("fig1's setting reduced, lr_rule (reported, no check): " + ", ".join(
        f"{r['arm']} final error {r['final_test_error']:.3g}" for r in lr))
