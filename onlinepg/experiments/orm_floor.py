"""orm-floor — outcome-reward queries on the staircase-LQ family with one m for every target (docs/theory.md §6).
Supersedes ``orm-lower-bound``, whose m = ⌈1/Q_q(ε)⌉ per target forced its slope.

The family is orm-lower-bound's: a cells instance with a staircase base, groups of base likelihood α_1 < … < α_G,
so that Q_q(ε) = α_g on the g-th step, one mid-step target ε_g per step. Each arm runs once from the base to the
lowest target; the queries at every target are read from the same trace.

The prediction is an exact model (barrier-zero's, started at the base). On cells every context has its own weights,
and the base puts the same probability s_0 = α_g^{1/N} on every correct token of a context of group g, with the
other tokens alike; every update of a context is the same step toward y*, so all its positions stay alike and its
likelihood after t updates is ``barrier_zero.likelihood_after_updates`` started at the logit gap z_0 =
log(s_0(k − 1)/(1 − s_0)) (checked against the engine to 1e-12 in the tests). A visit of a context succeeds and costs
queries as ``barrier_zero.visit_costs`` says, with its own group's mixture mass a_g = ½(α_g + k^−N); contexts are
visited uniformly (the Poisson clock); the queries at a target are those spent up to the first evaluation whose exact
test error is ≤ ε (``simulate``). The floor n(ε)/Q_q(ε) is ``orm_lower_bound.required_finds`` over Q_q(ε).
"""
import functools
import itertools
import math

import numpy as np

from .. import config as C
from ..build import build_task
from ..lq import evaluate_likelihoods, likelihood_quantile
from ..tasks import staircase_base
from .barrier import mixture_mass
from .barrier_zero import likelihood_after_updates, visit_clock, visit_costs
from .common import first_reaching, fit_slope, log_axes, markdown_table, mean_over_seeds, model_band, pyplot
from .orm_lower_bound import required_finds, step_targets

ARMS = {"best_of_m": ({"algo.name": "best_of_m"}, "orm_queries", 4),
        "onpolicy": ({"algo.name": "pg", "algo.behaviour": "policy"}, "orm_queries", 256),
        "argmax": ({"algo.name": "sgd"}, "rounds", 1)}
LABELS = {"best_of_m": "best-of-m, one m for every target", "onpolicy": "on-policy ORM",
          "argmax": "handed the base's argmax (SGD on y*, one query a round)"}


def base_gap(alpha, k, N):
    """The logit gap z_0 of every correct token under the staircase base of likelihood alpha."""
    s = alpha ** (1.0 / N)
    return math.log(s * (k - 1) / (1.0 - s))


def simulate(arm, k, N, groups, m, targets, eval_every, reps, seed, chunk_cells=1 << 22):
    """Queries at the first evaluation with test error ≤ ε for each ε of ``targets``: float[reps, len(targets)].
    ``groups`` is [(contexts, alpha)]; every context is followed until its own error is ≤ min(targets)/10. The
    clock is barrier-zero's (``barrier_zero.visit_clock``) with the current state's failed visits thinned by 1 − σ."""
    M = sum(n for n, _ in groups)
    floor = min(targets) / 10.0
    parts = []
    for n, alpha in groups:
        P = likelihood_after_updates(k, N, floor, z0=base_gap(alpha, k, N))
        parts.append((n, P, *visit_costs(arm, P[:-1], mixture_mass(alpha ** (1.0 / N), k, N), m)))
    err0 = sum(n * (1.0 - P[0]) for n, P, *_ in parts) / M
    return visit_clock(arm, M, parts, err0, targets, eval_every, reps, seed, thinned=True, chunk_cells=chunk_cells)


@functools.lru_cache(maxsize=32)
def _model_logs(k, N, groups, m, eps, eval_every, reps, seed):
    """log of best-of-m's ``simulate``, kept for the process (the tests run one scale many times)."""
    logs = np.log(simulate("best_of_m", k, N, list(groups), m, list(eps), eval_every, reps, seed))
    logs.flags.writeable = False
    return logs


def instance(ctx, M, seed=0):
    """(Likelihoods of y* under the staircase base on every context, the group of each context) at M contexts."""
    p = ctx.params
    cfg = C.resolve(C.apply_overrides(ctx.config, [f"task.N={p['N']}", f"task.M={M}", f"task.seed={seed}"]
                                      + ctx.config_sets))
    task = build_task(cfg)
    base, group = staircase_base(task, p["alphas"], p["fractions"])
    return evaluate_likelihoods(base, task.all_contexts()), group


def fixed_m(p, k):
    """best-of-m's one m: ⌈m_factor/a_1⌉, a_1 the exploration mixture's mass on y* at the lowest step."""
    return math.ceil(p["m_factor"] / mixture_mass(min(p["alphas"]) ** (1.0 / p["N"]), k, p["N"]))


def _arm_overrides(arm, M, m):
    """The engine options of an arm at M contexts (best-of-m with its one m), applied last; the tests swap it for
    wrong engines."""
    return {**ARMS[arm][0], "task.M": M, **({"algo.m": m} if arm == "best_of_m" else {})}


def run(ctx):
    p = ctx.params
    p.setdefault("fractions", [1.0] * len(p["alphas"]))
    k = ctx.shared.task.k
    N = p["N"]
    lo = float(k) ** -N
    if min(p["alphas"]) <= p["min_alpha_over_uniform"] * lo:
        raise C.ConfigError(f"orm-floor: every alpha must exceed {p['min_alpha_over_uniform']}·k^−N = "
                            f"{p['min_alpha_over_uniform'] * lo:.3g} (else the uniform half of the mixture sets the "
                            f"rate), got {min(p['alphas']):g}")
    m = fixed_m(p, k)
    S = len(ctx.seeds)
    Ms = list(p["Ms"])
    inst = {}
    for M in Ms:
        lik, group = instance(ctx, M)
        targets = step_targets(p["alphas"], p["fractions"], M)
        Q = [math.exp(likelihood_quantile(lik.loglik, eps)) for eps, _, _ in targets]
        need = [required_finds(M, eps, alpha, Sg) for eps, alpha, Sg in targets]
        sizes = np.bincount(group, minlength=len(p["alphas"]))      # the base's own groups, as the runs have them
        groups = [(int(n), float(a)) for n, a in zip(sizes, p["alphas"]) if n > 0]
        eps = [t[0] for t in targets]
        logs = _model_logs(k, N, tuple(groups), m, tuple(eps), ARMS["best_of_m"][2], p["model_reps"],
                           p["model_seed"] + M)
        inst[M] = dict(targets=targets, eps=eps, Q=Q, floor=[n / q for n, q in zip(need, Q)], logs=logs)
    mid = len(p["alphas"]) // 2
    X = np.log(np.array(Ms, float))
    slopes = np.polyfit(X, np.array([inst[M]["logs"][:, mid] for M in Ms]), 1)[0]
    slope, slope_sd = float(slopes.mean()), float(slopes.std(ddof=1))
    tol_slope = model_band(slope_sd, S, p["slope_margin"])
    ctx.predict("levels", "best-of-m (m = " + f"{m}" + " for every target and M): the seeds' mean of log queries to "
                "each mid-step target ε = " + ", ".join(f"{e:.3g}" for e in inst[Ms[0]]["eps"]) + " (Q_q = " +
                ", ".join(f"{q:.3g}" for q in inst[Ms[0]]["Q"]) + f") at every M of {Ms}",
                "the model's mean of log queries at that (M, ε) (table below)",
                f"± (3 sd of a {S}-seed mean under the model + log {p['level_margin']}) at every (M, ε)",
                "a query counter that charged one query a round, or a wrong update rule, moves the levels out of "
                "the band")
    ctx.predict("m_slope", f"best-of-m: log-log slope of queries to the middle target (Q_q = "
                f"{inst[Ms[0]]['Q'][mid]:.3g}) against M (γ² = 1/(M·N))",
                f"{slope:.3f}, the model's (≈ 1: every context must be found on its own)",
                f"± {tol_slope:.3f} (3 sd of a {S}-seed mean under the model + {p['slope_margin']})",
                "a run whose M is not the M of the axis has slope ≈ 0")
    ctx.predict("floor", "every sampling arm (best-of-m, on-policy ORM) at every (M, ε) with n(ε) > 0: the seeds' "
                "mean queries",
                "≥ n(ε)/Q_q(ε) (at M = " + f"{Ms[0]}: " + ", ".join(f"{f:.3g}" for f in inst[Ms[0]]["floor"] if f > 0)
                + ")",
                f"≥ (1 − {p['tol_floor']})·n(ε)/Q_q(ε)",
                "the learner handed the base's argmax must reach the lowest target in fewer than "
                f"(1 − {p['tol_floor']})·n(ε)/Q_q(ε) queries at every M (it does not explore by sampling)")
    with ctx.stage("best-of-m, on-policy ORM and the argmax learner from the base to the lowest target"):
        for M, seed, arm in itertools.product(Ms, ctx.seeds, ARMS):
            I = inst[M]
            over = {"task.N": N, "task.seed": seed, "run.seed": seed, "run.rounds": p["max_rounds"],
                    "run.eval_every": ARMS[arm][2], "run.target_error": min(I["eps"]), "base.alphas": p["alphas"],
                    "base.fractions": p["fractions"], **_arm_overrides(arm, M, m)}
            _, folder = ctx.run_arm(arm, {"M": M}, seed, over)
            for g, (eps, q, fl) in enumerate(zip(I["eps"], I["Q"], I["floor"])):
                qs = first_reaching(folder, eps, ARMS[arm][1])
                ctx.record(arm, {"M": M, "eps": round(eps, 6)}, seed, step=g, Q=q, floor=fl, queries=qs,
                           m=m if arm == "best_of_m" else None,
                           reached=qs is not None,
                           model_queries=float(np.exp(I["logs"][:, g].mean())) if arm == "best_of_m" else None)
    fit = _verdicts(ctx, p, inst, Ms, mid, slope, tol_slope, S)
    agg = mean_over_seeds(ctx.rows, ["arm", "M", "eps"], ["step", "Q", "floor", "queries", "model_queries"])
    for r in agg:
        r["over_floor"] = None if r["queries"] is None else r["queries"] / r["floor"]
    agg.sort(key=lambda r: (r["arm"], r["M"], r["eps"]))
    _plot(ctx, agg, Ms, mid)
    ctx.write(markdown_table(agg, ["arm", "M", "eps", "Q", "floor", "queries", "model_queries", "over_floor",
                                   "seeds"]), [fit])


def _verdicts(ctx, p, inst, Ms, mid, slope, tol_slope, S):
    rows = ctx.rows
    missing = sorted({(r["arm"], r["M"], r["eps"]) for r in rows if not r["reached"]})
    if missing:
        ctx.notes.append(f"runs that did not reach a target within max_rounds = {p['max_rounds']}: {missing} (a check "
                         "that needs them FAILs)")
    ok, parts, worst = True, [], None
    for M in Ms:
        for g, eps in enumerate(inst[M]["eps"]):
            got = [math.log(r["queries"]) for r in rows
                   if r["arm"] == "best_of_m" and r["M"] == M and r["step"] == g and r["reached"]]
            mu = float(inst[M]["logs"][:, g].mean())
            band = model_band(float(inst[M]["logs"][:, g].std(ddof=1)), S, math.log(p["level_margin"]))
            dev = (float(np.mean(got)) - mu) if len(got) == S else math.inf
            ok &= abs(dev) <= band
            parts.append(f"M={M} ε={eps:.3g}: {dev:+.3f} (±{band:.3f})")
            if worst is None or abs(dev) / band > worst[0]:
                worst = (abs(dev) / band, f"M={M} ε={eps:.3g}")
    ctx.verdict("levels", ok, f"mean log queries − model's: {'; '.join(parts)}; worst {worst[1]} at {worst[0]:.2f} "
                "of its band")
    rs = [r for r in rows if r["arm"] == "best_of_m" and r["step"] == mid and r["reached"]]
    fit = fit_slope([r["M"] for r in rs], [r["queries"] for r in rs], [r["seed"] for r in rs],
                    "best-of-m: log queries to the middle target vs log M", f"{slope:.3f}")
    full = len(rs) == S * len(Ms)
    ctx.verdict("m_slope", full and abs(fit["slope"] - slope) <= tol_slope,
                f"slope {fit['slope']:.3f} (95% CI [{fit['lo']:.3f}, {fit['hi']:.3f}]) against the model's "
                f"{slope:.3f} ± {tol_slope:.3f}")
    tf = 1.0 - p["tol_floor"]
    ok, above, below = True, [], []
    for arm in ("best_of_m", "onpolicy"):
        for M in Ms:
            for g, (eps, fl) in enumerate(zip(inst[M]["eps"], inst[M]["floor"])):
                if fl <= 0.0:
                    continue                      # n(ε) ≤ 0: no context must have been found, no floor
                got = [r["queries"] for r in rows if r["arm"] == arm and r["M"] == M and r["step"] == g and r["reached"]]
                ratio = (float(np.mean(got)) / fl) if len(got) == S else 0.0
                ok &= ratio >= tf
                above.append((ratio, f"{arm} M={M} ε={eps:.3g}"))
    for M in Ms:
        g = int(np.argmin(inst[M]["eps"]))
        got = [r["queries"] for r in rows if r["arm"] == "argmax" and r["M"] == M and r["step"] == g and r["reached"]]
        ratio = (float(np.mean(got)) / inst[M]["floor"][g]) if len(got) == S else math.inf
        ok &= ratio < tf
        below.append(f"M={M}: {ratio:.3g}")
    low = min(above)
    ctx.verdict("floor", ok, f"sampling arms' lowest mean queries / floor {low[0]:.3g} ({low[1]}); the argmax "
                f"learner's at the lowest target: {', '.join(below)}")
    ctx.notes.append("queries / floor (the table's over_floor) is large for best-of-m at the upper steps: with one m for "
                     "every target it spends on every visit to a context of a lower step too, which the model counts.")
    return fit


def _plot(ctx, agg, Ms, mid):
    plt = pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12.0, 4.6))
    for arm, mk in (("best_of_m", "o"), ("onpolicy", "s"), ("argmax", "^")):
        rs = [r for r in agg if r["arm"] == arm and r["M"] == Ms[-1] and r["queries"]]
        ax0.plot([r["Q"] for r in rs], [r["queries"] for r in rs], mk + "-", label=LABELS[arm])
    rs = [r for r in agg if r["arm"] == "best_of_m" and r["M"] == Ms[-1]]
    ax0.plot([r["Q"] for r in rs], [r["model_queries"] for r in rs], "k--", lw=1, label="best-of-m, the model")
    ax0.plot([r["Q"] for r in rs], [r["floor"] for r in rs], "k:", lw=1, label="floor n(ε)/Q_q(ε)")
    log_axes(ax0, "Q_q(ε) at the target ε", "reward queries to reach test error ≤ ε",
             f"M = {Ms[-1]}: queries per target, one m")
    for arm, mk in (("best_of_m", "o"), ("onpolicy", "s")):
        rs = sorted([r for r in agg if r["arm"] == arm and r["step"] == mid and r["queries"]], key=lambda r: r["M"])
        ax1.plot([r["M"] for r in rs], [r["queries"] for r in rs], mk + "-", label=LABELS[arm])
    log_axes(ax1, "M (contexts; γ² = 1/(M·N))", "queries to the middle target", "The 1/γ² factor at fixed Q_q(ε)")
    fig.tight_layout()
    ctx.figure(fig, "orm_floor")
    plt.close(fig)
