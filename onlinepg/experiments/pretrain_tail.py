"""pretrain-tail — pre-training on n ≲ 1/(γ²ε) samples can leave the likelihood quantile at k^−N, and outcome-reward
post-training then pays about k^N per context left there (docs/theory.md §6; the family is a reconstruction).

The constant-sequence family (``tasks.ConstantTask``): M orthogonal context directions, correct responses (B, …, B)
with B ∈ {0, 1}, context-only features, one head context and M − 1 tail contexts of total mass ``tail`` > ε. Adaptive
SGD pre-trains on n = f/(γ²ε) labelled samples, f ∈ ``n_factors``; a tail context it never saw keeps the uniform
policy's likelihood k^−N exactly, and one it saw v times has gained only about e^{v/2} (each adaptive step moves the
sequence log-likelihood by about ½: η = 1/(4 + 2‖g‖²) with ‖g‖² ≈ N²(k−1)/k). Best-of-m post-training from each
base counts its outcome queries to reach error ε. The structured strategy (0^N, then 1^N: at most 2 queries a
context) runs on the same stream: it is not a policy-gradient learner — the barrier is PG's, not every algorithm's.
"""
import math

import numpy as np

from .common import markdown_table, pyplot
from .pretraining import (base_profile, instance, log_kN, pretrain, queries_to, sample_unit, structured_queries_to,
                          unseen_tail_mass)


def task_over(p, seed):
    return {"task.k": p["k"], "task.N": p["N"], "task.M": p["M"], "task.tail": p["tail"], "task.seed": seed}


def _register(ctx, p, task, unit, floor_factors):
    kN = float(task.k) ** task.N
    ctx.predict("lq_at_floor", f"Q_q(ε)·k^N of the pre-trained base, ε = {p['eps']}, for the n whose expected unseen "
                f"tail mass tail·(1 − tail/(M−1))^n ≥ {p['floor_margin']}·ε: n_factor ∈ {floor_factors}",
                "= 1 (the ε-quantile context was never seen: its likelihood is the uniform k^−N)", "≤ 1 + 1e-9",
                f"the base pre-trained on {p['control_factor']}/(γ²ε) samples must exceed {p['lq_factor']}")
    ctx.predict("lq_near_floor", f"Q_q(ε)·k^N of every base n_factor ∈ {p['n_factors']}",
                "≈ e^{v/2} for the ε-quantile tail context's visit count v (expected visits n·tail/(M−1) = " +
                ", ".join(f"{f}: {f * unit * task.tail / (task.M - 1):.2g}" for f in p["n_factors"]) + ")",
                f"≤ {p['lq_factor']}", f"the base at {p['control_factor']}/(γ²ε) samples must exceed the tolerance")
    ctx.predict("sgd_not_at_eps", "adaptive SGD's own exact test error after n samples, every n_factor ∈ "
                f"{p['n_factors']}", f"≥ ε (the tail, of mass {task.tail:.3g} = {task.tail / p['eps']:.2g}ε, is still "
                "near the uniform policy)", "≥ ε", f"SGD at {p['control_factor']}/(γ²ε) samples must be below ε")
    ctx.predict("orm_pays_kN", f"best-of-m (m = {p['m']}) outcome queries from each base to reach test error ε",
                f"between {p['orm_const']}·k^N = {p['orm_const'] * kN:.4g} (one context at the floor costs ≈ k^N) and "
                f"the cap {p['cap_factor']}·(M−1)·k^N = {p['cap_factor'] * (task.M - 1) * kN:.4g}",
                "both ends as stated", "a non-learner never reaches ε (fails the upper end); a learner that could "
                "lift the tail cheaply would fail the lower end")
    ctx.predict("structured_two_queries", "queries of the structured strategy (0^N then 1^N, memorise) to reach ε on "
                "the same stream, against best-of-m's", f"≤ 2M = {2 * task.M} ≪ {p['orm_const']}·k^N",
                "≤ 2M and below best-of-m's on every base", "best-of-m (a PG learner) pays ≥ ½k^N: orm_pays_kN")


def run(ctx):
    p = ctx.params
    task0 = instance(ctx, task_over(p, ctx.seeds[0]))
    unit = sample_unit(task0, p["eps"])
    factors = list(p["n_factors"])
    floor_factors = [f for f in factors if unseen_tail_mass(task0, round(f * unit)) >= p["floor_margin"] * p["eps"]]
    _register(ctx, p, task0, unit, floor_factors)
    kN = float(task0.k) ** task0.N
    cap = int(p["cap_factor"] * (task0.M - 1) * kN)
    profiles = {}
    with ctx.stage(f"adaptive SGD pre-training, n = f/(γ²ε) for f in {factors + [p['control_factor']]}; best-of-m "
                   "post-training and the structured strategy from each base"):
        for seed in ctx.seeds:
            over = task_over(p, seed)
            task = instance(ctx, over)
            for f in factors + [p["control_factor"]]:
                n = int(round(f * unit))
                s, path = pretrain(ctx, over, f, seed, n)
                prof = base_profile(task, path, p["eps"])
                profiles[seed, f] = prof
                unseen = float(np.mean(prof["loglik"] <= -log_kN(task) + 1e-9))   # slots are equally likely
                row = dict(n=n, unseen_pred=unseen_tail_mass(task, n), unseen=unseen,
                           Q_ratio=math.exp(prof["log_Q"] + log_kN(task)), QTL_k=math.exp(prof["log_QTL"]) * task.k,
                           sgd_error=s["final_test_error"], control=f == p["control_factor"])
                if f != p["control_factor"]:
                    run_over = {**over, "algo.name": "best_of_m", "algo.m": p["m"], "algo.lr_rule": "adaptive",
                                "base.kind": "load", "base.path": path, "task.offset": n, "run.seed": seed,
                                "run.rounds": cap, "run.max_queries": cap, "run.target_error": p["eps"],
                                "run.eval_every": p["eval_every"]}
                    s_orm, folder = ctx.run_arm("best_of_m", {"n_factor": f}, seed, run_over)
                    row["orm_queries"] = queries_to(folder, p["eps"], ("orm_queries",))
                    row["structured_queries"] = structured_queries_to(task, prof["loglik"], n, p["structured_rounds"],
                                                                      p["eps"])[0]
                ctx.record("base", {"n_factor": f}, seed, **row)
    _verdicts(ctx, p, floor_factors, kN, cap, task0)
    _plot(ctx, p, profiles, kN, cap, task0)
    cols = ["n_factor", "seed", "n", "unseen_pred", "unseen", "Q_ratio", "QTL_k", "sgd_error", "orm_queries",
            "structured_queries"]
    ctx.notes.append(f"family: k = {task0.k}, N = {task0.N}, M = {task0.M} directions (tail {task0.M - 1} contexts "
                     f"of total mass {task0.tail:.3g}), exact γ = {task0.gamma:.4g}, 1/(γ²ε) = {unit:.4g} samples, "
                     f"k^N = {kN:.4g}; Q_ratio = Q_q(ε)·k^N, QTL_k = Q^TL(ε)·k (1 at the uniform policy).")
    ctx.write(markdown_table(sorted(ctx.rows, key=lambda r: (r["control"], r["n_factor"], r["seed"])), cols))


def _verdicts(ctx, p, floor_factors, kN, cap, task):
    grid = [r for r in ctx.rows if not r["control"]]
    ctl = [r for r in ctx.rows if r["control"]]
    ctl_q = min(r["Q_ratio"] for r in ctl)
    floor = [r for r in grid if r["n_factor"] in floor_factors]
    ctx.verdict("lq_at_floor", bool(floor) and all(r["Q_ratio"] <= 1 + 1e-9 for r in floor) and
                ctl_q > p["lq_factor"], "Q·k^N = " + ", ".join(f"{r['n_factor']}/{r['seed']}: {r['Q_ratio']:.4g}"
                                                         for r in floor) + f"; control ≥ {ctl_q:.4g}")
    ctx.verdict("lq_near_floor", all(r["Q_ratio"] <= p["lq_factor"] for r in grid) and ctl_q > p["lq_factor"],
                "Q·k^N = " + ", ".join(f"{r['n_factor']}/{r['seed']}: {r['Q_ratio']:.3g}" for r in grid) +
                f"; control ≥ {ctl_q:.4g}")
    ctl_err = max(r["sgd_error"] for r in ctl)
    ctx.verdict("sgd_not_at_eps", all(r["sgd_error"] >= p["eps"] for r in grid) and ctl_err < p["eps"],
                "SGD error = " + ", ".join(f"{r['n_factor']}/{r['seed']}: {r['sgd_error']:.3g}" for r in grid) +
                f"; control ≤ {ctl_err:.3g}")
    ok = all(r["orm_queries"] is not None and p["orm_const"] * kN <= r["orm_queries"] <= cap for r in grid)
    per_kN = lambda r: "not reached" if r["orm_queries"] is None else f"{r['orm_queries'] / kN:.3g}"  # noqa: E731
    ctx.verdict("orm_pays_kN", ok, "queries/k^N = " + ", ".join(f"{r['n_factor']}/{r['seed']}: {per_kN(r)}"
                                                                 for r in grid))
    ok = all(r["structured_queries"] is not None and r["structured_queries"] <= 2 * task.M and
             (r["orm_queries"] is None or r["structured_queries"] < r["orm_queries"]) for r in grid)
    ctx.verdict("structured_two_queries", ok, "structured queries = " + ", ".join(
        f"{r['n_factor']}/{r['seed']}: {r['structured_queries']}" for r in grid))


def _plot(ctx, p, profiles, kN, cap, task):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.4))
    seed = ctx.seeds[0]
    ax = axes[0]
    for f in list(p["n_factors"]) + [p["control_factor"]]:
        ll = np.sort(profiles[seed, f]["loglik"]) / math.log(10)
        ax.step(ll, np.arange(1, len(ll) + 1) / len(ll), where="post",
                label=f"n = {f:g}/(γ²ε)" + (" (control)" if f == p["control_factor"] else ""))
    ax.axvline(-math.log10(kN), color="k", ls=":", lw=1, label="k^−N (uniform)")
    ax.axhline(p["eps"], color="grey", ls="--", lw=0.8, label="ε")
    ax.set_xlabel("log10 p(y*|x) of the pre-trained base")
    ax.set_ylabel("likelihood CDF F(α)")
    ax.set_title(f"Pre-trained bases, seed {seed}")
    ax.legend(fontsize=7)
    grid = [r for r in ctx.rows if not r["control"]]
    ax = axes[1]
    x = np.array([r["n_factor"] for r in grid])
    ax.scatter(x, [r["Q_ratio"] for r in grid], label="Q_q(ε)·k^N")
    ax.scatter(x, [r["sgd_error"] / p["eps"] for r in grid], marker="s", label="SGD test error / ε")
    ax.axhline(1.0, color="k", ls=":", lw=1, label="1 (Q = k^−N; error = ε)")
    ax.axhline(p["lq_factor"], color="grey", ls="--", lw=0.8, label=f"tolerance {p['lq_factor']:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pre-training samples n · γ²ε")
    ax.set_title("The tail's likelihood quantile and SGD's own error")
    ax.legend(fontsize=7)
    ax = axes[2]
    orm = [(r["n_factor"], r["orm_queries"] if r["orm_queries"] is not None else cap) for r in grid]
    ax.scatter([a for a, _ in orm], [b for _, b in orm], label=f"best-of-m (m = {p['m']}), outcome reward")
    ax.scatter(x, [max(r["structured_queries"] or 0, 1) for r in grid], marker="^",
               label="structured 0^N then 1^N (not PG)")
    ax.axhline(p["orm_const"] * kN, color="k", ls=":", lw=1, label=f"{p['orm_const']:g}·k^N")
    ax.axhline(2 * task.M, color="grey", ls="--", lw=0.8, label="2M")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pre-training samples n · γ²ε")
    ax.set_ylabel(f"outcome queries to reach error ε = {p['eps']}")
    ax.set_title("Post-training cost from each base")
    ax.legend(fontsize=7)
    ctx.figure(fig, "pretrain_tail")
    plt.close(fig)
