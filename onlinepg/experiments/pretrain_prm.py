"""pretrain-prm — pre-training plus process-reward PG against adaptive SGD given the same number of labels and
queries (docs/theory.md §6; the comparison is a reconstruction of a remark of the paper).

On the constant-sequence family of pretrain-tail: adaptive SGD pre-trains on n = f/(γ²ε) labelled samples, then
Algorithm 2 (``pg_process``, explore variant) post-trains from that base, continuing the context stream, until test
error ε. Its cost is n labels plus its reward queries (outcome and prefix checks, one unit each). The reference is
adaptive SGD from w = 0 on the same stream — the pre-training run is its prefix — counting labels until error ε.
The theory's bound for the combination, Õ((N·min{1/Q^TL, k} + 1/ε)/γ²) queries, carries the same 1/(γ²ε) term
as SGD's labels plus a term of its own, so it is not predicted to be better: each process-reward round pays at least
one check and learns from the same full correct response a label would give, after a token-by-token search.
"""
import math

from ..trace import read_table
from .common import markdown_table, pyplot
from .pretrain_tail import task_over
from .pretraining import SGD, base_profile, instance, pretrain, queries_to, sample_unit


def _register(ctx, p, task):
    rate = (task.N * task.k + 1.0 / p["eps"]) / task.gamma ** 2
    ctx.predict("prm_not_better", "cost to reach test error ε = {0}: (pre-training labels n + process-reward queries) "
                "/ (adaptive SGD's labels), for n = f/(γ²ε), f ∈ {1}".format(p["eps"], p["n_factors"]),
                "≥ 1 (the combination is not better)", f"≥ {p['tol_ratio']} for every f",
                "both arms must reach ε within their caps (a non-learner does not); a combination better by more "
                f"than 1/{p['tol_ratio']:g} fails")
    ctx.notes.append(f"the combination's rate (N·min(1/Q^TL, k) + 1/ε)/γ² is at most (N·k + 1/ε)/γ² = {rate:.4g} "
                     "queries up to log factors: the table's `rate_ratio` is the measured queries over it (reported, "
                     "not a pre-registered check).")


def run(ctx):
    p = ctx.params
    task0 = instance(ctx, task_over(p, ctx.seeds[0]))
    unit = sample_unit(task0, p["eps"])
    _register(ctx, p, task0)
    curves = {}
    with ctx.stage(f"adaptive SGD from w = 0; pre-training on f/(γ²ε) samples, f ∈ {p['n_factors']}, then Algorithm 2"):
        for seed in ctx.seeds:
            over = task_over(p, seed)
            task = instance(ctx, over)
            cap = int(p["sgd_cap_factor"] * unit)
            s, folder = ctx.run_arm("sgd", {}, seed, {**over, **SGD, "run.seed": seed, "run.rounds": cap,
                                                       "run.target_error": p["eps"], "run.eval_every": p["eval_every"]})
            labels = queries_to(folder, p["eps"], ("round",))
            curves["sgd", seed] = _curve(folder, 0, ("round",))
            ctx.record("sgd", {"n_factor": 0.0}, seed, n=0, queries=0, cost=labels, labels_sgd=labels)
            for f in p["n_factors"]:
                n = int(round(f * unit))
                _, path = pretrain(ctx, over, f, seed, n)
                prof = base_profile(task, path, p["eps"])
                qcap = int(p["prm_cap_factor"] * unit)
                run_over = {**over, "algo.name": "pg_process", "algo.variant": "explore", "algo.m_tok": p["m_tok"],
                            "algo.lr_rule": "adaptive", "base.kind": "load", "base.path": path, "task.offset": n,
                            "run.seed": seed, "run.rounds": qcap, "run.max_queries": qcap,
                            "run.target_error": p["eps"], "run.eval_every": p["eval_every"]}
                _, folder = ctx.run_arm("pretrain_prm", {"n_factor": f}, seed, run_over)
                q = queries_to(folder, p["eps"])
                curves["prm", f, seed] = _curve(folder, n, ("orm_queries", "prm_queries"))
                qtl = math.exp(prof["log_QTL"])
                rate = (task.N * min(1.0 / qtl, task.k) + 1.0 / p["eps"]) / task.gamma ** 2
                ctx.record("pretrain_prm", {"n_factor": f}, seed, n=n, queries=q, cost=None if q is None else n + q,
                           labels_sgd=labels, ratio=None if q is None or not labels else (n + q) / labels,
                           QTL_k=qtl * task.k, rate_ratio=None if q is None else q / rate)
    _verdicts(ctx, p)
    _plot(ctx, p, curves, unit)
    ctx.write(markdown_table(ctx.rows, ["arm", "n_factor", "seed", "n", "queries", "cost", "labels_sgd", "ratio",
                                        "QTL_k", "rate_ratio"]))


def _curve(folder, offset, columns):
    ev = read_table(folder / "eval").to_pydict()
    cost = [offset + sum(ev[c][i] for c in columns) for i in range(len(ev["test_error"]))]
    return cost, ev["test_error"]


def _verdicts(ctx, p):
    prm = [r for r in ctx.rows if r["arm"] == "pretrain_prm"]
    ok = all(r["ratio"] is not None and r["ratio"] >= p["tol_ratio"] for r in prm)
    cost = lambda r: ("did not reach ε" if r["ratio"] is None else  # noqa: E731
                      f"({r['n']} + {r['queries']}) / {r['labels_sgd']} = {r['ratio']:.3g}")
    ctx.verdict("prm_not_better", ok, "; ".join(f"f={r['n_factor']} seed {r['seed']}: {cost(r)}" for r in prm))


def _plot(ctx, p, curves, unit):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.4, 4.6))
    seed = ctx.seeds[0]
    x, y = curves["sgd", seed]
    ax.plot([max(v, 1) for v in x], y, "k-", lw=1.6, label="adaptive SGD from w = 0 (labels)")
    for f in p["n_factors"]:
        x, y = curves["prm", f, seed]
        ax.plot(x, y, lw=1.2, label=f"pre-train {f:g}/(γ²ε) labels + Algorithm 2 (labels + queries)")
    ax.axhline(p["eps"], color="grey", ls="--", lw=0.8, label="ε")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("labels + reward queries")
    ax.set_ylabel("exact test error")
    ax.set_title(f"Pre-training + process reward vs SGD at equal budgets, seed {seed}")
    ax.legend(fontsize=7)
    ctx.figure(fig, "pretrain_prm")
    plt.close(fig)
