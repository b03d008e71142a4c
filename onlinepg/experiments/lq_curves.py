"""lq-curves — the Likelihood Quantile along pre-training (paper Figure 2b/c, docs/theory.md §6).

Pre-training is a chain of engine runs (``algo.name = "sgd"`` batched, Adagrad): block b starts from block
b−1's last checkpoint with a fresh optimiser state, which is how the paper's checkpoints were produced. Each
checkpoint's exact log-likelihoods on a fresh context set go through the ``onlinepg.lq`` estimators.
"""
import math

import numpy as np

from .. import config as C
from .. import lq
from ..build import build_task
from ..weights import load_policy
from ..policy import Policy
from .common import markdown_table, pyplot

ARM = "sgd_adagrad"
LOG10 = math.log(10.0)


def _task(ctx, p, seed):
    """The task every block of ``seed`` trains on (same resolution as the engine runs: --set applied last)."""
    cfg = {sec: dict(values) for sec, values in ctx.config.items()}
    cfg["task"] = {**cfg.get("task", {}), "d": p["d"], "k": p["k"], "N": p["N"], "seed": seed}
    return build_task(C.resolve(C.apply_overrides(cfg, ctx.config_sets)))


def _last_checkpoint(folder):
    ckpts = sorted((folder / "checkpoints").glob("ckpt-*.npz"))
    return ckpts[-1]


def _register(ctx, p):
    ctx.predict("start_is_uniform", "Q(ε) and Q^TL(ε) of the step-0 model (w = 0) at every ε",
                f"Q = k^−N = 10^{-p['N'] * math.log10(p['k']):.2f} and Q^TL = 1/k exactly", "relative 1e-9",
                "an estimator or likelihood kernel off by anything would miss the closed form")
    ctx.predict("lq_moves_right", "log10 Q(ε) at ε = 0.1 and 0.5 across the checkpoints, every seed",
                "non-decreasing with pre-training, and the last checkpoint's Q(0.5) at least "
                f"{p['min_rise_decades']} decades above the start's",
                f"a fall of at most {p['tol_fall_decades']} decades between consecutive checkpoints (the estimator's "
                f"noise on {p['contexts']} contexts)",
                "a run that replayed or stopped learning would not rise; the step-0 row is the fixed anchor")


def _verdicts(ctx, p, summary):
    eps = np.asarray(p["eps"], float)
    start = [r for r in ctx.rows if r.get("step") == 0 and r.get("eps") is not None]
    uq, utl = -p["N"] * math.log(p["k"]), -math.log(p["k"])
    worst = max(max(abs(r["log_Q"] / uq - 1), abs(r["log_Q_TL"] / utl - 1)) for r in start)
    ctx.verdict("start_is_uniform", len(start) == len(eps) * len(ctx.seeds) and worst <= 1e-9,
                f"largest relative deviation of log Q / log Q^TL from the closed form: {worst:.2e} over "
                f"{len(start)} rows")
    falls, rises = [], []
    for seed in ctx.seeds:
        rows = sorted((r for r in summary if r["seed"] == seed), key=lambda r: r["step"])
        for col in ("log10_Q_0.1", "log10_Q_0.5"):
            v = np.array([r[col] for r in rows])
            falls.append(float(np.max(v[:-1] - v[1:])) if len(v) > 1 else 0.0)
        rises.append(rows[-1]["log10_Q_0.5"] - rows[0]["log10_Q_0.5"])
    ok = max(falls) <= p["tol_fall_decades"] and min(rises) >= p["min_rise_decades"]
    ctx.verdict("lq_moves_right", ok, f"largest fall between consecutive checkpoints {max(falls):.3f} decades; "
                f"rise of Q(0.5) from the start {min(rises):.2f} decades (smallest over seeds)")


def run(ctx):
    p = ctx.params
    _register(ctx, p)
    per_ckpt = {}
    for seed in ctx.seeds:
        task = _task(ctx, p, seed)
        weights = [(0, None)]                  # (pre-training step, weights file); step 0 is w = 0
        for b in range(1, p["blocks"] + 1):
            over = {"task.d": p["d"], "task.k": p["k"], "task.N": p["N"], "task.seed": seed, "run.seed": seed,
                    "algo.batch": p["batch"], "algo.lr": p["lr"], "run.rounds": p["block_steps"],
                    "run.eval_every": p["block_steps"], "run.checkpoint_every": p["block_steps"],
                    # every block continues the one pre-training stream: fresh contexts at every step
                    "task.offset": (b - 1) * p["block_steps"] * p["batch"]}
            if weights[-1][1] is None:
                over["base.kind"] = "zero"
            else:
                over.update({"base.kind": "load", "base.path": str(weights[-1][1].resolve())})
            step = b * p["block_steps"]
            with ctx.stage(f"pre-training block {b}/{p['blocks']}: steps {step - p['block_steps']}–{step} "
                           f"(seed {seed})"):
                _, folder = ctx.run_arm(ARM, {"block": b}, seed, over)
            weights.append((step, _last_checkpoint(folder)))
        with ctx.stage(f"exact likelihoods of {len(weights)} checkpoints × {p['contexts']} contexts (seed {seed})"):
            for step, path in weights:
                policy = load_policy(path) if path is not None else Policy(task.features)
                lik = lq.evaluate_task(policy, task, p["contexts"])
                per_ckpt[seed, step] = lik
                _record(ctx, p, seed, step, lik)
    summary = _summary(p, per_ckpt)
    _verdicts(ctx, p, summary)
    _notes(ctx, p, summary)
    _plot(ctx, p, per_ckpt, ctx.seeds[0])
    cols = ["step", "test_error", "median_likelihood", "log10_Q_0.1", "log10_Q_0.5", "log10_QTL_0.001",
            "log10_QTL_0.1", "log10_QTL_0.5", "log10_max_alpha_tail", "log10_argmax_alpha",
            "frac_at_or_below_uniform"]
    fmt = {c: _f2 for c in cols[1:]} | {"test_error": _f4, "frac_at_or_below_uniform": _f4,
                                         "median_likelihood": lambda v: f"{v:.5g}"}
    ctx.write(markdown_table(summary, ["seed"] + cols, fmt=fmt))


def _f2(v):
    return "—" if v is None else f"{v:.2f}"


def _f4(v):
    return "—" if v is None else f"{v:.4f}"


def _alpha_grid(p):
    """Decades of α from the uniform model's k^−N to 1 (natural logs), for the tidy CDF / α-tail rows."""
    lo = -p["N"] * math.log10(p["k"])
    step = 10 if lo < -50 else 1
    return np.arange(math.floor(lo / step) * step, 0 + step, step, dtype=float) * LOG10


def _record(ctx, p, seed, step, lik):
    eps = np.asarray(p["eps"], float)
    err = float(1.0 - np.exp(lik.loglik).mean())
    log_q = np.atleast_1d(lq.likelihood_quantile(lik.loglik, eps))
    log_qtl = np.atleast_1d(lq.token_likelihood_quantile(lik.min_token, eps))
    for e, a, t in zip(eps, log_q, log_qtl):
        ctx.record(ARM, {"step": step, "eps": float(e)}, seed, log_Q=float(a), log_Q_TL=float(t),
                   log10_Q=float(a / LOG10), log10_Q_TL=float(t / LOG10), contexts=len(lik), test_error=err)
    grid = _alpha_grid(p)
    F = np.atleast_1d(lq.likelihood_cdf(lik.loglik, grid))
    tail = np.atleast_1d(lq.alpha_tail(lik.loglik, grid))
    for la, f, t in zip(grid, F, tail):
        ctx.record(ARM, {"step": step, "log10_alpha": float(la / LOG10)}, seed, cdf=float(f),
                   log10_alpha_tail=float(t / LOG10) if np.isfinite(t) else None, contexts=len(lik))


def _summary(p, per_ckpt):
    """One row per (seed, checkpoint step) for the results.md table and the notes."""
    out = []
    for (seed, step), lik in sorted(per_ckpt.items()):
        grid = lq.log_alpha_grid([lik.loglik], num=2048)
        tail = np.atleast_1d(lq.alpha_tail(lik.loglik, grid))
        i = int(np.argmax(tail))
        q = np.atleast_1d(lq.likelihood_quantile(lik.loglik, [0.1, 0.5])) / LOG10
        t = np.atleast_1d(lq.token_likelihood_quantile(lik.min_token, [0.001, 0.1, 0.5])) / LOG10
        # "at or below" k^−N with a relative slack for rounding: the uniform model itself must count as 1
        below = float(lq.likelihood_cdf(lik.loglik, -p["N"] * math.log(p["k"]) * (1.0 - 1e-12)))
        out.append({"seed": seed, "step": step, "test_error": float(1.0 - np.exp(lik.loglik).mean()),
                    "median_log10_lik": float(np.median(lik.loglik) / LOG10),
                    "median_likelihood": float(np.exp(np.median(lik.loglik))),
                    "log10_min_token_min": float(lik.min_token.min() / LOG10), "log10_Q_0.1": float(q[0]),
                    "log10_Q_0.5": float(q[1]), "log10_QTL_0.001": float(t[0]), "log10_QTL_0.1": float(t[1]),
                    "log10_QTL_0.5": float(t[2]), "frac_at_or_below_uniform": below,
                    "log10_max_alpha_tail": float(tail[i] / LOG10), "log10_argmax_alpha": float(grid[i] / LOG10)})
    return out


def _rises(values):
    return all(b >= a for a, b in zip(values, values[1:]))


def _notes(ctx, p, summary):
    uniform = -p["N"] * math.log10(p["k"])
    for seed in ctx.seeds:
        rows = [r for r in summary if r["seed"] == seed]
        second, last = rows[1], rows[-1]
        ctx.notes.append(
            f"seed {seed}: the uniform start (step 0) has every likelihood at k^−N = 10^{uniform:.0f} and "
            f"Q^TL = 1/k. Median likelihood: {second['median_likelihood']:.5g} at step {second['step']} → "
            f"{last['median_likelihood']:.5g} at step {last['step']}; log10 Q(0.1): {second['log10_Q_0.1']:.2f} → "
            f"{last['log10_Q_0.1']:.2f}; log10 Q^TL(0.1): {second['log10_QTL_0.1']:.2f} → "
            f"{last['log10_QTL_0.1']:.2f}.")
        checks = {"the median likelihood": [r["median_log10_lik"] for r in rows[1:]],
                  "Q(0.1)": [r["log10_Q_0.1"] for r in rows[1:]],
                  "Q^TL(0.1)": [r["log10_QTL_0.1"] for r in rows[1:]],
                  "the largest α-tail": [r["log10_max_alpha_tail"] for r in rows[1:]]}
        up = [name for name, vals in checks.items() if _rises(vals)]
        down = [name for name, vals in checks.items() if not _rises(vals)]
        ctx.notes.append(
            f"seed {seed}: across the {len(rows) - 1} checkpoints, rising monotonically: {', '.join(up) or 'none'}"
            f"{'; not monotone: ' + ', '.join(down) if down else ''}. Test error 1 − E p(y*|x): "
            f"{second['test_error']:.4f} at step {second['step']} → {last['test_error']:.4f} at step {last['step']}. "
            f"Largest α-tail α·P[p(y*|x) > α]: 10^{second['log10_max_alpha_tail']:.2f} (at α = "
            f"10^{second['log10_argmax_alpha']:.2f}) → 10^{last['log10_max_alpha_tail']:.2f} (at α = "
            f"10^{last['log10_argmax_alpha']:.2f}).")
        far = [r["log10_QTL_0.001"] for r in rows[1:]]
        worst = "falls" if last["log10_min_token_min"] < second["log10_min_token_min"] else "rises"
        ctx.notes.append(
            f"seed {seed}: the far tail: log10 Q^TL(0.001) by checkpoint {', '.join(f'{x:.2f}' for x in far)} "
            f"({'monotone' if _rises(far) else 'not monotone'}); the smallest min-token probability over the "
            f"{p['contexts']} contexts {worst}, 10^{second['log10_min_token_min']:.1f} → "
            f"10^{last['log10_min_token_min']:.1f}. Fraction of contexts at or below the uniform model's "
            f"likelihood k^−N: {second['frac_at_or_below_uniform']:.4f} at step {second['step']}, "
            f"{last['frac_at_or_below_uniform']:.4f} at step {last['step']}.")
    ctx.notes.append(
        "Every block replays the same context stream (contexts 0 … batch·block_steps − 1 of the task's "
        f"training stream): the engine has no key to start a run's stream at an offset, so the {p['blocks']} blocks "
        f"are {p['blocks']} passes over the same {p['block_steps']} batches rather than fresh data. The LQ is "
        "measured on a separate fresh stream, so this is not train-set leakage.")


def _decade_formatter():
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda v, _: f"$10^{{{v:.0f}}}$" if abs(v - round(v)) < 1e-9 else "")


def _plot(ctx, p, per_ckpt, seed):
    plt = pyplot()
    steps = sorted(s for (sd, s) in per_ckpt if sd == seed and s > 0)
    cmap = plt.get_cmap("viridis")
    colour = {s: cmap(i / max(len(steps) - 1, 1)) for i, s in enumerate(steps)}
    uniform = -p["N"] * math.log10(p["k"])
    n = p["contexts"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    (a_cdf, a_lq), (a_tl, a_tail) = axes
    eps = np.geomspace(1.0 / n, 0.99, 400)
    alpha = np.geomspace(1e-4, 1.0, 400)
    for s in steps:
        lik = per_ckpt[seed, s]
        ll = np.sort(lik.loglik) / LOG10
        F = np.arange(1, len(ll) + 1) / len(ll)
        # every order statistic of the lower tail, geometrically thinner towards F = 1 (a log-F axis)
        keep = np.unique(np.geomspace(1, len(ll), 1500).astype(np.int64)) - 1
        kw = {"color": colour[s], "lw": 1.2, "label": f"step {s}"}
        a_cdf.step(ll[keep], F[keep], where="post", **kw)
        a_lq.plot(eps, np.atleast_1d(lq.likelihood_quantile(lik.loglik, eps)) / LOG10, **kw)
        a_tl.plot(eps, np.exp(np.atleast_1d(lq.token_likelihood_quantile(lik.min_token, eps))), **kw)
        a_tail.plot(alpha, np.exp(np.atleast_1d(lq.alpha_tail(lik.loglik, np.log(alpha)))), **kw)
    a_cdf.axvline(uniform, color="grey", ls=":", lw=1, label="uniform model k^−N")
    a_cdf.xaxis.set_major_formatter(_decade_formatter())
    a_cdf.set_xlabel("α (log scale)")
    a_cdf.set_yscale("log")
    a_cdf.set_ylabel("F(α) = P[p(y*|x) ≤ α]")
    a_cdf.set_title("Likelihood CDF")
    a_lq.set_ylabel("Q(ε) (log scale)")
    a_lq.yaxis.set_major_formatter(_decade_formatter())
    a_lq.set_title("Likelihood Quantile Q(ε)")
    a_tl.axhline(1.0 / p["k"], color="grey", ls=":", lw=1, label="uniform model 1/k")
    a_tl.set_yscale("log")
    a_tl.set_ylabel("Q^TL(ε)")
    a_tl.set_title("Token-level Likelihood Quantile Q^TL(ε)")
    for ax in (a_lq, a_tl):
        ax.set_xscale("log")
        ax.set_xlabel("ε (fraction of contexts ignored)")
    a_tail.set_xscale("log")
    a_tail.set_xlabel("α")
    a_tail.set_ylabel("α · P[p(y*|x) > α]")
    a_tail.set_ylim(0, None)
    a_tail.set_title("α-tail")
    a_cdf.legend(fontsize=7, ncol=2, loc="upper left")
    a_tl.legend(fontsize=7, ncol=2, loc="lower right")
    fig.suptitle(f"lq-curves — bigram, N = {p['N']}, d = {p['d']}, k = {p['k']}, Rademacher contexts; Adagrad "
                 f"lr {p['lr']:g}, batch {p['batch']}, reset every {p['block_steps']} steps; "
                 f"{n} fresh contexts, seed {seed}", fontsize=10)
    fig.tight_layout()
    ctx.figure(fig, "lq-curves")
    plt.close(fig)
