"""fig1 — outcome vs process reward beyond the base model's support (paper Figure 1, docs/theory.md §6).

Stages: the supervised base is trained once per seed and saved (``base/seed=<s>/base.npz``); the ORM and PRM
arms then load it, so both post-train exactly the same weights. Each arm tracks every mixture centre's exact
likelihood at every step (``tracked/``) and the exact held-out test error (``eval/``).
"""
import copy
import math
import pathlib
from collections import namedtuple

import numpy as np

from .. import config as C
from ..build import build_base, build_task, test_batch
from ..weights import save_policy
from ..outdir import makedirs
from ..trace import read_table
from .common import markdown_table, mean_over_seeds, pyplot

ARMS = {"orm": {"algo.reward_type": "outcome", "algo.baseline": "batch_mean"},
        "prm": {"algo.reward_type": "process", "algo.baseline": "none"}}
LABELS = {"orm": "ORM (outcome, batch-mean baseline)", "prm": "PRM (process, no baseline)"}
COLOURS = {"orm": "tab:red", "prm": "tab:blue"}
LOG10 = math.log(10.0)
Curves = namedtuple("Curves", ["eval_steps", "err", "steps", "lik", "loglik"])


def _task_overrides(p, seed):
    return {"task.d": p["d"], "task.k": p["k"], "task.N": p["N"], "task.centres": p["centres"],
            "task.seed": seed, "task.test_contexts": p["test_contexts"]}


def _resolved(ctx, overrides):
    """The shared config with ``overrides`` and the command line's --set applied, resolved."""
    cfg = copy.deepcopy(ctx.config)
    for key, value in overrides.items():
        sec, k = key.split(".", 1)
        cfg.setdefault(sec, {})[k] = value
    return C.resolve(C.apply_overrides(cfg, ctx.config_sets))


def _train_base(ctx, seed):
    """The supervised base of ``seed`` (built exactly as base.kind = 'pretrain' would), saved for the arms.
    Returns (weights path, the held-out test batch: its ``J`` are the contexts' centre ids)."""
    p = ctx.params
    cfg = _resolved(ctx, {**_task_overrides(p, seed), "base.kind": "pretrain", "base.steps": p["base_steps"],
                          "base.batch": p["base_batch"], "base.lr": p["base_lr"]})
    task = build_task(cfg)
    path = ctx.out / "base" / f"seed={seed}" / "base.npz"
    makedirs(path.parent)
    save_policy(build_base(task, cfg), path, base_steps=p["base_steps"])
    return path, test_batch(task, cfg)


def _curves(folder):
    """One run folder's curves: the test-error evaluations (eval_steps int64[E], err float64[E]) and the tracked
    centres (steps int64[T], lik and loglik float64[T, M]); row 0 of each is the base (step 0). The two
    schedules differ (run.eval_every vs run.track_every)."""
    ev = read_table(pathlib.Path(folder) / "eval").to_pydict()
    tr = read_table(pathlib.Path(folder) / "tracked").to_pydict()
    steps = np.unique(np.asarray(tr["round"]))
    M = int(max(tr["tracked_id"])) + 1
    rows = np.searchsorted(steps, np.asarray(tr["round"]))
    ids = np.asarray(tr["tracked_id"])
    lik = np.full((len(steps), M), np.nan)
    loglik = np.full((len(steps), M), np.nan)
    lik[rows, ids] = tr["likelihood"]
    loglik[rows, ids] = tr["loglik_star"]
    return Curves(np.asarray(ev["round"]), np.asarray(ev["test_error"]), steps, lik, loglik)


def _at(steps, values, step):
    """Value at the last evaluated step ≤ ``step``."""
    i = np.searchsorted(steps, step, side="right") - 1
    return float(values[max(i, 0)])


def _register(ctx, p):
    budget = p["steps"] * p["batch"] / p["centres"]
    ctx.predict("orm_stuck_below_budget", "ORM final test error against the held-out mass of the centres whose "
                f"base likelihood is below 1/(per-centre budget) = centres/(steps·batch) = 1/{budget:g}, every seed",
                "≥ that mass: the outcome reward cannot find y* for them", f"≥ mass − {p['tol_mass']}",
                f"the PRM arm must end below mass − {p['tol_mass']} on every seed whose mass exceeds "
                f"{2 * p['tol_mass']}")
    ctx.predict("prm_lifts_off_support", f"mean final likelihood of the off-support centres (base < "
                f"{p['off_support']:g}), every seed that has any", f"ORM < {p['orm_stuck_lik']}, PRM > "
                f"{p['prm_lifted_lik']}", "as stated", "the two arms start from the same saved base: a PRM that "
                "lifted nothing, or an ORM that leaked y*, fails")
    ctx.predict("prm_beats_orm", "ORM − PRM final test error, per seed with ≥ 1 off-support centre",
                "> 0 on every such seed", "> 0", "seeds without off-support centres are reported beside them "
                "(the arms should tie there)")


def _ci(values):
    """Mean and 95% t half-width over seeds (nan half-width with one value)."""
    v = np.asarray([x for x in values if x is not None], float)
    if len(v) < 2:
        return (float(v.mean()) if len(v) else float("nan")), float("nan")
    from scipy import stats
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def run(ctx):
    p = ctx.params
    _register(ctx, p)
    curves = {}
    for seed in ctx.seeds:
        with ctx.stage(f"base: supervised Adagrad, {p['base_steps']} steps × batch {p['base_batch']} "
                       f"(seed {seed})"):
            base_path, test = _train_base(ctx, seed)
            test_ids = test.J
        for arm, arm_over in ARMS.items():
            over = {**_task_overrides(p, seed), "base.kind": "load", "base.path": str(base_path.resolve()),
                    "algo.batch": p["batch"], "algo.lr": p["lr"], "run.rounds": p["steps"],
                    "run.eval_every": p["eval_every"], "run.eval_log_points": p["eval_log_points"],
                    "run.track_every": 1, "run.seed": seed, **arm_over}
            with ctx.stage(f"{arm.upper()}: {p['steps']} steps × batch {p['batch']}, exact eval every "
                           f"{p['eval_every']} step(s) (+{p['eval_log_points']} log-spaced) on {p['test_contexts']} "
                           f"contexts, centres every step (seed {seed})"):
                summary, folder = ctx.run_arm(arm, {}, seed, over)
            curves[arm, seed] = _curves(folder)
            eval_steps, err, steps, lik, loglik = curves[arm, seed]
            base_loglik = loglik[0]
            off = base_loglik < math.log(p["off_support"])
            worst = np.argsort(base_loglik)[: max(1, len(base_loglik) // 4)]
            off_mass = float(np.isin(test_ids, np.flatnonzero(off)).mean())
            per_centre = p["steps"] * p["batch"] / p["centres"]      # the ORM's queries per centre
            below_T = base_loglik < -math.log(per_centre)
            ctx.record(arm, {}, seed, final_test_error=float(err[-1]),
                       **{f"test_error_at_{s}": _at(eval_steps, err, s) for s in p["report_steps"]},
                       off_support_count=int(off.sum()), centres=len(off), off_support_test_mass=off_mass,
                       below_1_over_T_count=int(below_T.sum()),
                       below_1_over_T_test_mass=float(np.isin(test_ids, np.flatnonzero(below_T)).mean()),
                       unsolved_count_end=int((lik[-1] < 0.5).sum()),
                       off_support_mean_likelihood_end=float(lik[-1, off].mean()) if off.any() else None,
                       off_support_mean_log10_lik_end=float(loglik[-1, off].mean() / LOG10) if off.any() else None,
                       worst_quarter_mean_log10_lik_base=float(base_loglik[worst].mean() / LOG10),
                       worst_quarter_mean_log10_lik_end=float(loglik[-1, worst].mean() / LOG10),
                       worst_quarter_mean_likelihood_end=float(lik[-1, worst].mean()),
                       min_centre_log10_lik_end=float(loglik[-1].min() / LOG10),
                       wall_seconds=summary["wall_seconds"])
    _notes(ctx)
    _verdicts(ctx, p)
    _plot(ctx, curves, ctx.seeds[0])
    measures = [f"test_error_at_{s}" for s in p["report_steps"]] + [
        "off_support_count", "off_support_test_mass", "below_1_over_T_test_mass", "unsolved_count_end",
        "off_support_mean_likelihood_end", "off_support_mean_log10_lik_end", "worst_quarter_mean_likelihood_end"]
    agg = mean_over_seeds(ctx.rows, ["arm"], measures)
    per_seed = _per_seed(ctx)
    ctx.write(markdown_table(agg, ["arm"] + measures + ["seeds"]) + "\n\n" +
              markdown_table(per_seed, ["seed", "off_support_count", "below_budget_test_mass", "orm_plateau",
                                        "prm_final", "orm_minus_prm"]))


def _per_seed(ctx):
    """One row per seed, then the mean ± 95% t half-width over seeds."""
    by = {(r["arm"], r["seed"]): r for r in ctx.rows}
    rows = [{"seed": s, "off_support_count": by["orm", s]["off_support_count"],
             "below_budget_test_mass": by["orm", s]["below_1_over_T_test_mass"],
             "orm_plateau": by["orm", s]["final_test_error"], "prm_final": by["prm", s]["final_test_error"],
             "orm_minus_prm": by["orm", s]["final_test_error"] - by["prm", s]["final_test_error"]}
            for s in ctx.seeds]
    summary = {"seed": "mean ± 95% CI"}
    for col in ("off_support_count", "below_budget_test_mass", "orm_plateau", "prm_final", "orm_minus_prm"):
        mean, half = _ci([r[col] for r in rows])
        summary[col] = f"{mean:.4g} ± {half:.2g}"
    return rows + [summary]


def _verdicts(ctx, p):
    by = {(r["arm"], r["seed"]): r for r in ctx.rows}
    tol = p["tol_mass"]
    gaps = [(s, by["orm", s]["below_1_over_T_test_mass"], by["orm", s]["final_test_error"],
             by["prm", s]["final_test_error"]) for s in ctx.seeds]
    ok = all(orm >= mass - tol for _, mass, orm, _ in gaps)
    control = [(s, prm < mass - tol) for s, mass, _, prm in gaps if mass > 2 * tol]
    ctx.verdict("orm_stuck_below_budget", ok and all(c for _, c in control),
                "; ".join(f"seed {s}: mass {mass:.3f}, ORM {orm:.3f}, PRM {prm:.3f}" for s, mass, orm, prm in gaps) +
                f" ({len(control)} seed(s) with mass > {2 * tol} for the control)")
    off = [s for s in ctx.seeds if by["orm", s]["off_support_count"] > 0]
    lifted = [(s, by["orm", s]["off_support_mean_likelihood_end"], by["prm", s]["off_support_mean_likelihood_end"])
              for s in off]
    ctx.verdict("prm_lifts_off_support", bool(off) and all(o < p["orm_stuck_lik"] and q > p["prm_lifted_lik"]
                                                           for _, o, q in lifted),
                "; ".join(f"seed {s}: ORM {o:.3g}, PRM {q:.3g}" for s, o, q in lifted) or "no seed has an "
                "off-support centre")
    diffs = [(s, by["orm", s]["final_test_error"] - by["prm", s]["final_test_error"]) for s in ctx.seeds]
    ctx.verdict("prm_beats_orm", bool(off) and all(d > 0 for s, d in diffs if s in off),
                "; ".join(f"seed {s}: {d:+.4f}" + ("" if s in off else " (no off-support centre)") for s, d in diffs))


def _notes(ctx):
    p = ctx.params
    by = {(r["arm"], r["seed"]): r for r in ctx.rows}
    T = p["steps"] * p["batch"] / p["centres"]
    for seed in ctx.seeds:
        o, q = by["orm", seed], by["prm", seed]
        ctx.notes.append(
            f"seed {seed}: {o['off_support_count']} of {o['centres']} centres have base likelihood < "
            f"{p['off_support']:g} (\"off-support\"; the paper saw 4 of 32); they hold "
            f"{o['off_support_test_mass']:.3f} of the held-out contexts. {o['below_1_over_T_count']} centres "
            f"(test mass {o['below_1_over_T_test_mass']:.3f}) lie below 1/T, T = {p['steps']}·{p['batch']}/"
            f"{p['centres']} = {T:g} outcome-reward queries per centre of the ORM arm.")
        if o["off_support_mean_likelihood_end"] is not None:
            ctx.notes.append(
                f"seed {seed}: off-support centres' mean likelihood at step {p['steps']}: ORM "
                f"{o['off_support_mean_likelihood_end']:.3g}, PRM {q['off_support_mean_likelihood_end']:.3g}.")
        ctx.notes.append(
            f"seed {seed}: test error at step {p['steps']}: ORM {o['final_test_error']:.4f}, PRM "
            f"{q['final_test_error']:.4f} (the ORM's plateau against the test mass of the off-support centres, "
            f"{o['off_support_test_mass']:.3f}, and of the centres below 1/T, {o['below_1_over_T_test_mass']:.3f}). "
            f"Centres still below likelihood 0.5: ORM {o['unsolved_count_end']}, PRM {q['unsolved_count_end']} of "
            f"{o['centres']}.")
        for arm, r in (("ORM", o), ("PRM", q)):
            trend = ", ".join(f"{r[f'test_error_at_{s}']:.4f} @ {s}" for s in p["report_steps"])
            ctx.notes.append(f"seed {seed}: {arm} test error by step: {trend}.")
        ctx.notes.append(
            f"seed {seed}: worst quarter of centres by base likelihood (mean log10 likelihood "
            f"{o['worst_quarter_mean_log10_lik_base']:.1f} at the base): mean likelihood at the end ORM "
            f"{o['worst_quarter_mean_likelihood_end']:.3g}, PRM {q['worst_quarter_mean_likelihood_end']:.3g}; "
            f"mean log10 likelihood ORM {o['worst_quarter_mean_log10_lik_end']:.1f}, PRM "
            f"{q['worst_quarter_mean_log10_lik_end']:.1f}.")


def _log_thin(steps, n=600):
    """Indices of ``steps`` (increasing, > 0) thinned to about n points evenly spaced on a log axis (the first and
    last kept): a curve tracked at every one of thousands of steps draws the same on a log-x panel, much faster."""
    if len(steps) <= n:
        return np.arange(len(steps))
    marks = np.geomspace(steps[0], steps[-1], n)
    return np.unique(np.concatenate([[0, len(steps) - 1], np.searchsorted(steps, marks).clip(0, len(steps) - 1)]))


def _plain_log_x(ax):
    """A log x axis labelled 1, 10, 100, … in plain text: matplotlib's default labels (10^k) are typeset by its
    mathtext parser, a large share of the figures' drawing time (the labels read the same)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _colorbar(fig, mappable, ax):
    """The base-likelihood colour bar: its log scale spans up to 300 decades, so it gets at most 8 labelled ticks
    and no minor ones (the default locator drew a tick, with a typeset label, for hundreds of decades, and that
    was most of the figure's drawing time), labelled 1e-k in plain text (see ``_plain_log_x``)."""
    from matplotlib.ticker import FuncFormatter, LogLocator
    cb = fig.colorbar(mappable, ax=ax, label="base likelihood of the centre")
    cb.locator = LogLocator(numticks=8)
    cb.formatter = FuncFormatter(lambda v, _: f"1e{round(math.log10(v))}" if v < 1 else "1")
    cb.minorticks_off()
    cb.update_ticks()
    return cb


def _plot(ctx, curves, seed):
    plt = pyplot()
    from matplotlib.colors import LogNorm
    p = ctx.params
    base = curves["orm", seed].loglik[0]
    off = base < math.log(p["off_support"])
    order = np.argsort(base)[::-1]           # the lowest-base centres drawn last, on top
    base_lik = np.exp(base)
    norm = LogNorm(vmin=max(base_lik.min(), 1e-300), vmax=1.0)
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    for arm in ARMS:
        _, _, steps, lik, _ = curves[arm, seed]
        keep = np.flatnonzero(steps > 0)
        keep = keep[_log_thin(steps[keep])]
        if off.any():
            ax.plot(steps[keep], lik[keep][:, off].mean(axis=1), color=COLOURS[arm], label=LABELS[arm])
    _plain_log_x(ax)
    ax.set_xlabel("post-training step")
    ax.set_ylabel("mean likelihood p(y*|centre)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{int(off.sum())} off-support centres (base likelihood < {p['off_support']:g})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    for arm in ARMS:
        steps, err, _, _, _ = curves[arm, seed]
        ax.plot(steps, err, color=COLOURS[arm], label=LABELS[arm])
    row = next(r for r in ctx.rows if r["arm"] == "orm" and r["seed"] == seed)
    if off.any():
        ax.axhline(row["off_support_test_mass"], color="k", ls="--", lw=1,
                   label=f"test mass of off-support centres ({row['off_support_test_mass']:.3f})")
    ax.axhline(row["below_1_over_T_test_mass"], color="k", ls=":", lw=1,
               label=f"test mass of centres below 1/(T/centres) ({row['below_1_over_T_test_mass']:.3f})")
    ax.set_xlabel("post-training step")
    ax.set_ylabel("test error 1 − E p(y*|x) (exact, held out)")
    ax.set_ylim(0, None)
    ax.set_title("Test error", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[2]
    _, _, steps, lik, _ = curves["orm", seed]
    keep = np.flatnonzero(steps > 0)
    keep = keep[_log_thin(steps[keep])]
    for c in order:
        ax.plot(steps[keep], lik[keep, c], color=cmap(norm(max(base_lik[c], 1e-300))), lw=1)
    _plain_log_x(ax)
    ax.set_xlabel("post-training step")
    ax.set_ylabel("likelihood p(y*|centre)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("ORM: each centre's likelihood", fontsize=10)
    _colorbar(fig, plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax)
    fig.suptitle(f"fig1 — N = {p['N']}, d = {p['d']}, k = {p['k']}, {p['centres']} centres, batch {p['batch']}, "
                 f"Adagrad lr {p['lr']:g}, ±1 rewards, seed {seed}", fontsize=11)
    fig.subplots_adjust(left=0.05, right=0.97, wspace=0.3, top=0.85)    # fixed: tight_layout cost a full layout pass
    ctx.figure(fig, "fig1")
    plt.close(fig)

    # Companion: every centre's log-likelihood under both arms (where the linear panels show only "0").
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    for ax, arm in zip(axes, ARMS):
        _, _, steps, _, loglik = curves[arm, seed]
        keep = np.flatnonzero(steps > 0)
        keep = keep[_log_thin(steps[keep])]
        for c in order:
            ax.plot(steps[keep], loglik[keep, c] / math.log(10), color=cmap(norm(max(base_lik[c], 1e-300))), lw=1)
        ax.axhline(math.log10(p["off_support"]), color="k", ls="--", lw=0.8, label="off-support threshold")
        _plain_log_x(ax)
        ax.set_xlabel("post-training step")
        ax.set_title(LABELS[arm], fontsize=10)
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("log10 likelihood log10 p(y*|centre)")
    _colorbar(fig, plt.cm.ScalarMappable(norm=norm, cmap=cmap), axes)
    fig.suptitle(f"fig1 — per-centre log-likelihood, seed {seed}", fontsize=11)
    ctx.figure(fig, "fig1-centres")
    plt.close(fig)
