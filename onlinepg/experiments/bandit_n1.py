"""bandit-n1 — N = 1 online bandit multiclass, every learner on one stream (docs/theory.md §4.2, §4.6, §4.7, §7).

Arms on the same context stream and seed: the paper's PG with the adaptive rate under uniform and on-policy
behaviour, the Banditron (ε-greedy play, importance-weighted perceptron step), the full-information multiclass
perceptron (Novikoff's 2/γ² line), and Vowpal Wabbit ``--cbify`` when the package is installed (a skipped row
otherwise). Two streams: orthogonal contexts (a cells instance, exact γ) and non-orthogonal ones (the bigram teacher
at N = 1 with Rademacher contexts; its γ is the empirical margin of the teacher on the held-out set, so the bound
drawn there is indicative). Mistakes are the committed (played) labels ≠ y*, cumulative, read at log-spaced rounds.

PG under uniform behaviour commits its on-policy sample but learns from the uniform draw, so its mistakes stop
growing (Õ(k/γ²) under the margin); the Banditron's constant exploration rate costs about ε(1 − 1/k) mistakes per
round for ever, so its cumulative mistakes keep growing linearly.
"""

import numpy as np

from .. import config as C
from ..build import build_task, test_batch
from ..tasks import empirical_margin
from ..trace import read_table
from .common import markdown_table, pyplot

ARMS = {"pg_uniform": {"algo.name": "pg", "algo.behaviour": "uniform"},
        "pg_on_policy": {"algo.name": "pg", "algo.behaviour": "policy"},
        "banditron": {"algo.name": "banditron"},
        "perceptron": {"algo.name": "perceptron"}}
STREAMS = ("orthogonal", "non_orthogonal")


def _stream_over(p, stream, seed):
    if stream == "orthogonal":
        return {"task.kind": "cells", "task.k": p["k"], "task.N": 1, "task.gamma": p["gamma"], "task.seed": seed}
    return {"task.kind": "teacher", "task.d": p["d"], "task.k": p["k"], "task.N": 1, "task.contexts": "rademacher",
            "task.seed": seed}


def _stream_config(p, stream, seed):
    """The resolved config of a stream's task (defaults elsewhere): what its γ and its contexts are read from."""
    cfg = C.defaults()
    for key, value in _stream_over(p, stream, seed).items():
        sec, k = key.split(".")
        cfg[sec][k] = value
    return C.resolve(cfg)


def _margin(p, stream, seed):
    """(γ, whether exact) of the stream's instance."""
    cfg = _stream_config(p, stream, seed)
    task = build_task(cfg)
    if stream == "orthogonal":
        return task.gamma, True
    return empirical_margin(task.features, task.star_weights(), test_batch(task, cfg)), False


def _register(ctx, p):
    ctx.predict("perceptron_novikoff", "full-information perceptron's mistakes on the orthogonal stream (exact γ)",
                "≤ 2/γ² (Novikoff)", "as stated", "the bandit learners' mistakes must exceed 2/γ² there (one bit a "
                "round costs at least a factor k)")
    ctx.predict("pg_flattens", "share of PG-uniform's mistakes made in the second half of the horizon, on each stream "
                "whose horizon is at least 100·k/γ² (the bound says nothing before it)",
                "≈ 0 (bounded up to log factors)", f"≤ {p['tol_flat']}",
                "the Banditron with a constant ε keeps erring on ε(1 − 1/k) of the rounds: its share must exceed "
                f"{p['banditron_min_share']}")


def _vw_mistakes(p, stream, seed, marks):
    """Cumulative mistakes of Vowpal Wabbit --cbify at ``marks`` on the engine's own stream, or None."""
    try:
        import vowpalwabbit
    except ImportError:
        return None
    from ..build import ContextStream
    cfg = _stream_config(p, stream, seed)
    b = ContextStream(build_task(cfg), cfg).batch(0, p["rounds"])
    ws = vowpalwabbit.Workspace(f"--cbify {p['k']} --quiet --random_seed {seed}")
    out, t0 = [], 0
    for mark in marks:
        for t in range(t0, mark):                       # a peer's Python loop, one call per round (VW's API)
            feats = (" ".join(f"f{c}:{x:.6g}" for c, x in enumerate(b.X[t])) if b.X.shape[1]
                     else f"c{int(b.J[t])}")
            ws.learn(f"{int(b.Ystar[t, 0]) + 1} | {feats}")
        t0 = mark
        out.append(int(round(ws.get_sum_loss())))
    return out


def run(ctx):
    p = ctx.params
    _register(ctx, p)
    curves = {}
    with ctx.stage(f"{len(ARMS)} learners on {len(STREAMS)} streams, {p['rounds']} rounds each"):
        for stream in STREAMS:
            for seed in ctx.seeds:
                gamma, exact = _margin(p, stream, seed)
                for arm, over in ARMS.items():
                    run_over = {**_stream_over(p, stream, seed), **over, "algo.eps": p["eps"], "run.seed": seed,
                                "run.rounds": p["rounds"], "run.eval_every": p["rounds"],
                                "run.eval_log_points": p["curve_points"], "run.trace_every": p["rounds"]}
                    s, folder = ctx.run_arm(arm, {"stream": stream}, seed, run_over)
                    ev = read_table(folder / "eval").to_pydict()
                    t, m = np.asarray(ev["round"]), np.asarray(ev["mistakes_sampled"], float)
                    curves[stream, arm, seed] = (t, m)
                    half = float(np.interp(p["rounds"] / 2, t, m))
                    ctx.record(arm, {"stream": stream}, seed, gamma=gamma, gamma_exact=exact, rounds=p["rounds"],
                               mistakes=float(m[-1]), second_half_share=(m[-1] - half) / max(m[-1], 1.0),
                               novikoff=2.0 / gamma ** 2 if gamma > 0 else None, queries=s["orm_queries"])
                marks = [int(x) for x in curves[stream, "pg_uniform", seed][0] if x > 0]
                vw = _vw_mistakes(p, stream, seed, marks)
                if vw is None:
                    ctx.record("vw_cbify", {"stream": stream}, seed, skipped="vowpalwabbit not installed")
                else:
                    curves[stream, "vw_cbify", seed] = (np.array([0] + marks), np.array([0.0] + vw, float))
                    ctx.record("vw_cbify", {"stream": stream}, seed, gamma=gamma, rounds=p["rounds"],
                               mistakes=float(vw[-1]))
    _verdicts(ctx, p)
    _plot(ctx, p, curves)
    rows = [r for r in ctx.rows]
    ctx.write(markdown_table(rows, ["stream", "arm", "seed", "gamma", "mistakes", "second_half_share", "novikoff",
                                    "queries", "skipped"]))


def _verdicts(ctx, p):
    orth = [r for r in ctx.rows if r["stream"] == "orthogonal" and r.get("mistakes") is not None]
    perc = [r for r in orth if r["arm"] == "perceptron"]
    bandit = [r for r in orth if r["arm"] in ("pg_uniform", "pg_on_policy", "banditron")]
    ok = all(r["mistakes"] <= r["novikoff"] for r in perc) and all(r["mistakes"] > r["novikoff"] for r in bandit)
    ctx.verdict("perceptron_novikoff", bool(perc) and ok,
                "; ".join(f"{r['arm']} seed {r['seed']}: {r['mistakes']:.0f} (2/γ² = {r['novikoff']:.0f})"
                          for r in perc + bandit))
    long = lambda r: r["rounds"] >= 100 * p["k"] / r["gamma"] ** 2  # noqa: E731
    pg = [r for r in ctx.rows if r["arm"] == "pg_uniform" and long(r)]
    bt = [r for r in ctx.rows if r["arm"] == "banditron" and long(r)]
    ok = bool(pg) and all(r["second_half_share"] <= p["tol_flat"] for r in pg) and \
        all(r["second_half_share"] > p["banditron_min_share"] for r in bt)
    ctx.verdict("pg_flattens", ok, "; ".join(f"{r['arm']} {r['stream']} seed {r['seed']}: "
                                             f"{r['second_half_share']:.3f}" for r in pg + bt)
                + f" (streams with T ≥ 100·k/γ²: {sorted({r['stream'] for r in pg}) or 'none'})")


def _plot(ctx, p, curves):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 4.6), sharey=True)
    seed = ctx.seeds[0]
    for ax, stream in zip(axes, STREAMS):
        for arm in (*ARMS, "vw_cbify"):
            if (stream, arm, seed) in curves:
                t, m = curves[stream, arm, seed]
                keep = t > 0
                ax.plot(t[keep], np.maximum(m[keep], 0.5), label=arm)
        row = next(r for r in ctx.rows if r["stream"] == stream and r["arm"] == "perceptron" and r["seed"] == seed)
        if row["novikoff"]:
            ax.axhline(row["novikoff"], color="k", ls=":", lw=1,
                       label=f"2/γ² = {row['novikoff']:.3g} (γ {'exact' if row['gamma_exact'] else 'empirical'})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("round t")
        ax.set_title(f"{stream.replace('_', '-')} contexts (k = {p['k']}), seed {seed}")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("cumulative mistakes (played label ≠ y*)")
    fig.tight_layout()
    ctx.figure(fig, "bandit-n1")
    plt.close(fig)
