"""fig1-pooled — paper Figure 1's claim as pooled checks over many fresh seeds (docs/theory.md §5, §6).

Supersedes the checks of ``fig1``, whose verdicts at its small scale an ORM arm with its step zeroed or negated
shares with the right engine, and whose
per-seed, every-centre rules went beyond what the figure shows: with the bigram map every centre shares the
transition block W2 and the context block W1, so learning some centres moves the others either way (the authors'
own code does the same; docs/theory.md §5). The runs are fig1's (same stages, same arms, ``fig1.py``); the checks
read the figure's pooled quantities:

* ``prm_above_orm_off_support``: over every seed's off-support centres (base likelihood below ``off_support``),
  the mean final likelihood under PRM minus under ORM, with a 95% bootstrap interval that resamples seeds (the
  centres of one seed are coupled, so the seed is the unit); its lower end must be above ``min_gap`` (a
  likelihood gap: a PRM that learns nothing keeps those centres below ``off_support``, a gap of about 0).
* ``orm_stuck_below_budget``: the ORM's final error on the held-out contexts whose centre's base likelihood is
  below 1/(its per-centre budget of queries), pooled over seeds, must stay at or above ``stuck_floor`` (from
  exploratory seeds; the spec says which), while the PRM's error on the same contexts is lower (bootstrap interval
  of ORM − PRM above 0).
* ``orm_learns_reachable``: on the held-out contexts of the other centres, the ORM's pooled final error must be at
  most ``learn_fraction`` of the base's there: the outcome reward does learn what it can reach.

The final weights of each arm are its last checkpoint; errors on held-out subsets are exact (1 − p(y*|x) from the
weights, on the same test contexts as the run's evaluation).
"""
import contextlib
import math

import numpy as np

from ..trace import read_table
from ..weights import load_policy
from . import fig1
from .common import markdown_table, pass_at_k_figure


def _engine(arm):
    """Context for running ``arm``; the tests replace it to swap in the wrong engines each check must catch."""
    return contextlib.nullcontext()


def _arm_overrides(arm):
    """The options of an arm on top of fig1's; the tests swap it for wrong engines expressible as options."""
    return dict(fig1.ARMS[arm])


def bootstrap_ci(num, den, reps, seed):
    """95% interval of Σ num / Σ den when the seeds (the entries) are resampled with replacement."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(num), size=(reps, len(num)))
    d = den[idx].sum(axis=1)
    stats = num[idx].sum(axis=1)[d > 0] / d[d > 0]
    return float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))


def _final_likelihoods(folder, test):
    ckpt = sorted((folder / "checkpoints").glob("ckpt-*.npz"))[-1]
    return np.exp(load_policy(ckpt).loglik(test.X, test.J, test.Ystar)[0])


def _final_pass_at_k(folder):
    """(k, the policy's pass@k, the base's) at the run's last evaluation (its passk/ table)."""
    pk = read_table(folder / "passk").to_pydict()
    last = max(pk["round"])
    rows = [i for i, r in enumerate(pk["round"]) if r == last]
    return tuple(np.array([pk[c][i] for i in rows]) for c in ("k", "pass_at_k", "base_pass_at_k"))


def _practice(ctx, passk):
    """Reported, not checked: the barrier in the practitioners' metric — exact pass@k of the base, the ORM and the
    PRM after training, averaged over the seeds, and where each arm's pass@k falls below the base's."""
    arms = sorted({a for a, _ in passk})
    k = passk[arms[0], ctx.seeds[0]][0]
    mean = {a: np.mean([passk[a, s][1] for s in ctx.seeds], axis=0) for a in arms}
    base = np.mean([passk[arms[0], s][2] for s in ctx.seeds], axis=0)
    for a in arms:
        below = np.flatnonzero(base > mean[a])
        cross = f"falls below the base's from k = {int(k[below[0]])}" if len(below) else "stays above the base's"
        ctx.notes.append(f"pass@k (exact, mean over seeds), {a.upper()}: pass@1 {mean[a][0]:.3f} against the base's "
                         f"{base[0]:.3f}, pass@{int(k[-1])} {mean[a][-1]:.3f} against {base[-1]:.3f}; it {cross} "
                         "(reported, not a check).")
    pass_at_k_figure(ctx, "fig1-pooled-pass-at-k", f"fig1 after post-training: pass@k, mean over {len(ctx.seeds)} "
                     "seeds", (k, base), [(k, mean[a], fig1.COLOURS[a], fig1.LABELS[a]) for a in arms])


def run(ctx):
    p = ctx.params
    budget = p["steps"] * p["batch"] / p["centres"]
    ctx.predict("prm_above_orm_off_support", f"mean final likelihood of the off-support centres (base < "
                f"{p['off_support']:g}), PRM − ORM, pooled over the seeds' off-support centres",
                "> 0: the process reward lifts what the outcome reward cannot reach (the figure: 0.36 against "
                "0.056 in the authors' setting)",
                f"the 95% bootstrap interval (seeds resampled) lies above min_gap = {p['min_gap']}",
                "a PRM arm that does not learn (its step zeroed) has no such gap")
    ctx.predict("orm_stuck_below_budget", f"ORM final error on the held-out contexts of the centres whose base "
                f"likelihood is below 1/{budget:g} (its queries per centre), pooled over seeds",
                f"≥ {p['stuck_floor']}", f"the floor, from the exploratory seeds ({p['stuck_basis']})",
                "the PRM's error there is lower (bootstrap interval of ORM − PRM above 0); an outcome reward that "
                "leaked where the response goes wrong (the process reward in its place) falls below the floor")
    ctx.predict("orm_learns_reachable", "ORM final error on the held-out contexts of the other centres, pooled, "
                "over the base's error there", f"≤ {p['learn_fraction']}",
                "as stated (the issue's 'error falls at least 50 % from the base')",
                "an ORM whose step is zeroed stays at 1, one whose step is sign-flipped goes above 1")
    rows, passk = [], {}
    for seed in ctx.seeds:
        with ctx.stage(f"base: supervised Adagrad, {p['base_steps']} steps (seed {seed})"):
            base_path, test = fig1._train_base(ctx, seed)
        base_lik = np.exp(load_policy(base_path).loglik(test.X, test.J, test.Ystar)[0])
        for arm in fig1.ARMS:
            over = {**fig1._task_overrides(p, seed), "base.kind": "load", "base.path": str(base_path.resolve()),
                    "algo.batch": p["batch"], "algo.lr": p["lr"], "run.rounds": p["steps"],
                    "run.eval_every": p["eval_every"], "run.track_every": p["track_every"], "run.seed": seed,
                    "run.checkpoint_every": p["steps"], **_arm_overrides(arm)}
            with ctx.stage(f"{arm.upper()}: {p['steps']} steps × batch {p['batch']} (seed {seed})"), _engine(arm):
                _, folder = ctx.run_arm(arm, {}, seed, over)
            curves = fig1._curves(folder)
            centre_base = curves.loglik[0]
            off = centre_base < math.log(p["off_support"])
            below = centre_base < -math.log(budget)
            lik = _final_likelihoods(folder, test)
            stuck = np.isin(test.J, np.flatnonzero(below))
            row = {"off_support_count": int(off.sum()), "off_lik_sum": float(curves.lik[-1, off].sum()),
                   "below_budget_contexts": int(stuck.sum()), "below_err_sum": float((1 - lik[stuck]).sum()),
                   "reach_contexts": int((~stuck).sum()), "reach_err_sum": float((1 - lik[~stuck]).sum()),
                   "reach_base_err_sum": float((1 - base_lik[~stuck]).sum()),
                   "final_test_error": float(curves.err[-1])}
            ctx.record(arm, {}, seed, **row)
            rows.append({"arm": arm, "seed": seed, **row})
            passk[arm, seed] = _final_pass_at_k(folder)
    _verdicts(ctx, p, rows)
    _practice(ctx, passk)
    ctx.write(markdown_table(ctx.rows, ["arm", "seed", "off_support_count", "off_lik_sum", "below_budget_contexts",
                                        "below_err_sum", "reach_contexts", "reach_err_sum", "reach_base_err_sum",
                                        "final_test_error"]))


def _verdicts(ctx, p, rows):
    by = {(r["arm"], r["seed"]): r for r in rows}
    seeds = ctx.seeds
    reps, bseed = p["bootstrap_reps"], p["bootstrap_seed"]
    n_off = [by["orm", s]["off_support_count"] for s in seeds]
    gap = [by["prm", s]["off_lik_sum"] - by["orm", s]["off_lik_sum"] for s in seeds]
    if sum(n_off):
        lo, hi = bootstrap_ci(gap, n_off, reps, bseed)
        mean = sum(gap) / sum(n_off)
        o = sum(by["orm", s]["off_lik_sum"] for s in seeds) / sum(n_off)
        ctx.verdict("prm_above_orm_off_support", lo > p["min_gap"], f"PRM − ORM {mean:+.3f} (95% bootstrap [{lo:+.3f}, "
                    f"{hi:+.3f}]) over {sum(n_off)} off-support centres on {sum(1 for n in n_off if n)} of "
                    f"{len(seeds)} seeds; ORM {o:.3f}, PRM {o + mean:.3f}")
    else:
        ctx.verdict("prm_above_orm_off_support", False, "no seed has an off-support centre")
    n_b = [by["orm", s]["below_budget_contexts"] for s in seeds]
    if sum(n_b):
        orm = sum(by["orm", s]["below_err_sum"] for s in seeds) / sum(n_b)
        prm = sum(by["prm", s]["below_err_sum"] for s in seeds) / sum(n_b)
        lo, hi = bootstrap_ci([by["orm", s]["below_err_sum"] - by["prm", s]["below_err_sum"] for s in seeds], n_b,
                              reps, bseed + 1)
        ctx.verdict("orm_stuck_below_budget", orm >= p["stuck_floor"] and lo > 0,
                    f"ORM error {orm:.3f} (floor {p['stuck_floor']}), PRM {prm:.3f} on {sum(n_b)} held-out "
                    f"contexts; ORM − PRM 95% bootstrap [{lo:+.3f}, {hi:+.3f}]")
    else:
        ctx.verdict("orm_stuck_below_budget", False, "no held-out context has a centre below the budget")
    base = sum(by["orm", s]["reach_base_err_sum"] for s in seeds)
    orm = sum(by["orm", s]["reach_err_sum"] for s in seeds)
    ratio = orm / base if base > 0 else math.inf
    lo, hi = bootstrap_ci([by["orm", s]["reach_err_sum"] for s in seeds],
                          [by["orm", s]["reach_base_err_sum"] for s in seeds], reps, bseed + 2)
    ctx.verdict("orm_learns_reachable", ratio <= p["learn_fraction"],
                f"ORM / base error on the other centres' held-out contexts {ratio:.3f} (95% bootstrap [{lo:.3f}, "
                f"{hi:.3f}]; base error there {base / sum(by['orm', s]['reach_contexts'] for s in seeds):.3f})")
