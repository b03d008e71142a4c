"""per-sample-mixture — the per-sample guarantee on the arm the theorem is about, against an exact model
(docs/theory.md §6.1), and the two query-law checks at the threshold the queries experiment uses.

Supersedes the checks of ``per-sample``: its per-sample bound was applied to best-of-m, whose normalised gap
(2.97) sat far below the limit 20, so a learner 7× slower passed; and its spec said "min_delta_aic = 2 as in the
queries experiment" while queries uses 4.0 (at 4.0 its best-of-m ΔAIC of 3.63 would have failed). Those verdicts
stay as registered; the corrected checks are these, on fresh seeds.

The model. PG with the fixed behaviour ½q₀ + ½Unif, 0/1 rewards and no importance weight moves only when its
sample is y*, and then along ∇ log p_w(y*|x); on cells from the staircase base β_g·w* every such step is the same
recursion of the logit gap as in barrier-zero, started at the group's own gap z_g = log(s_g(k − 1)/(1 − s_g)), s_g
= α_g^{1/N} (``barrier_zero.likelihood_after_updates``). A round picks context j with probability 1/M and hits y*
with probability α_b,g = ½(α_g + k^−N), so the updates of j by round t are Binomial(t, α_b,g/M): the model draws
them at the run's own evaluation rounds (``eval_rounds``) and computes the random-iterate gap exactly as the
experiment does from the tracked likelihoods (``per_sample.random_iterate_gap``). G = gap·π_α·α_b·γ²·T.
"""
import itertools
import math
import types

import numpy as np

from ..schedule import Schedule
from .barrier_zero import likelihood_after_updates
from .common import markdown_table, model_band, pyplot
from .per_sample import (_stream_group_rounds, _traced_group_queries, _tracked, first_group_round, instance,
                         law_fit, law_verdict, random_iterate_gap)

ARMS = {"mixture_pg": {"algo.name": "pg", "algo.behaviour": "mixture"}, "best_of_m": {"algo.name": "best_of_m"}}
EXPECTED = {"best_of_m": "additive", "mixture_pg": "multiplicative"}


def eval_rounds(T, every, log_points):
    """The rounds at which a run of T rounds tracks its contexts (``Schedule`` with track_every = 0), from 0."""
    sched = Schedule(types.SimpleNamespace(run=types.SimpleNamespace(rounds=T, eval_every=every, track_every=0,
                                                                      eval_log_points=log_points)))
    out, t = [0], 0
    while t < T:
        t = min(sched.next_event(t), T)
        out.append(t)
    return np.array(out)


def behaviour_mass(alphas, k, N):
    return 0.5 * (np.asarray(alphas, float) + float(k) ** -N)


def model_gaps(k, N, M, group, alphas, rounds, reps, seed):
    """Replicates of the random-iterate gap at every round of ``rounds`` for each threshold: float[reps, E, G]."""
    rng = np.random.default_rng(seed)
    alphas = np.asarray(alphas, float)
    ab = behaviour_mass(alphas, k, N)
    T = int(rounds[-1])
    tables = []
    for g, a in enumerate(alphas):
        s = a ** (1.0 / N)
        lam = ab[g] / M * T
        tables.append(likelihood_after_updates(k, N, 0.0, z0=math.log(s * (k - 1) / (1.0 - s)),
                                               most=int(lam + 10 * math.sqrt(lam) + 10)))
    dt = np.diff(rounds)
    lik = np.empty((reps, len(rounds), M))
    for j in range(M):
        P = tables[group[j]]
        n = np.concatenate([np.zeros((reps, 1), np.int64),
                            np.cumsum(rng.binomial(dt, ab[group[j]] / M, size=(reps, len(dt))), axis=1)], axis=1)
        lik[:, :, j] = P[np.minimum(n, len(P) - 1)]
    out = np.empty((reps, len(rounds), len(alphas)))
    for h in range(len(alphas)):
        members = alphas[group] >= alphas[h]
        for r in range(reps):
            out[r, :, h] = random_iterate_gap(rounds, lik[r], members)
    return out


def run(ctx):
    p = ctx.params
    task, group = instance(ctx)
    k, N, M = task.k, task.N, task.M
    G = len(p["alphas"])
    alphas = np.asarray(p["alphas"], float)
    ab = behaviour_mass(alphas, k, N)
    mass = np.bincount(group, minlength=G) / M
    pi = np.array([mass[alphas >= a].sum() for a in alphas])
    gamma2 = task.gamma ** 2
    Tm = p["mixture_rounds"]
    every = max(1, Tm // p["eval_points"])
    rounds = eval_rounds(Tm, every, p["eval_points"])
    at = [int(np.searchsorted(rounds, Tm // f)) for f in p["check_fractions"]]   # the checked rounds' indices
    gaps = model_gaps(k, N, M, group, alphas, rounds, p["model_reps"], p["model_seed"])
    norm = pi * ab * gamma2
    logG = {(i, h): np.log(gaps[:, i, h] * norm[h] * rounds[i]) for i in at for h in range(G)}
    S = len(ctx.seeds)
    band = {key: model_band(float(v.std(ddof=1)), S, math.log(p["margin"])) for key, v in logG.items()}
    ctx.predict("mixture_per_sample", "fixed-mixture PG: G = gap·π_α·α_b·γ²·T (α_b = ½(α_g + k^−N), the behaviour's "
                "mass on y*; gap = 1 − the random iterate's mean likelihood on the contexts with base likelihood ≥ "
                f"α_g), every threshold α_g = {p['alphas']}, at T = {', '.join(str(int(rounds[i])) for i in at)}; "
                "the seeds' mean of log G",
                "the exact model's: " + "; ".join(
                    f"T={int(rounds[i])}: " + ", ".join(f"{math.exp(logG[i, h].mean()):.3g}" for h in range(G))
                    for i in at), f"log G ± (3 sd of a {S}-seed mean under the model + log {p['margin']})",
                "a learner 7× slower (its G 7× larger), or one exploring from q₀ alone (α_b doubled), lands outside")
    for arm, law in EXPECTED.items():
        other = "multiplicative" if law == "additive" else "additive"
        ctx.predict(f"{arm}_{law}_aic4", f"{arm}: AIC of the {other} law minus AIC of the {law} law, fitted to the "
                    f"queries spent on group g until its mean likelihood reaches 1 − ε, in units of M_g·N "
                    f"(α_g = {p['alphas']}, ε = {p['eps']})", f"> 0: the {law} law fits",
                    f"≥ {p['min_delta_aic']} (the queries experiment's threshold)",
                    "the other arm follows the other law, so the same comparison comes out the other way there")
    m = math.ceil(p["m_factor"] / alphas.min())
    points, curves = [], {}
    with ctx.stage(f"fixed-mixture PG and best-of-m (m = {m}) on the staircase base"):
        for seed, (arm, over) in itertools.product(ctx.seeds, ARMS.items()):
            T = Tm if arm == "mixture_pg" else p["rounds"]
            run_over = {**over, "task.N": N, "task.seed": seed, "run.seed": seed, "run.rounds": T,
                        "base.alphas": p["alphas"], "base.fractions": p["fractions"], "algo.m": m,
                        "run.eval_every": max(1, T // p["eval_points"]), "run.eval_log_points": p["eval_points"],
                        "run.tracked": "test", "run.tracked_count": M,
                        "run.trace_every": 1 if arm == "best_of_m" else 1000, **_arm_overrides(arm)}
            _, folder = ctx.run_arm(arm, {}, seed, run_over)
            ev, lik = _tracked(folder, M)
            if arm == "mixture_pg":
                curves[seed] = (ev, lik)
                for h in range(G):
                    gap = random_iterate_gap(ev, lik, alphas[group] >= alphas[h])
                    for i in at:
                        ctx.record(arm, {"alpha": float(alphas[h]), "eps": None, "T": int(ev[i])}, seed,
                                   G=float(gap[i] * norm[h] * ev[i]),
                                   G_model=float(math.exp(logG[i, h].mean())))
            first = {(g, e): first_group_round(ev, lik, group == g, e) for g in range(G) for e in p["eps"]}
            need = sorted({r for r in first.values() if r is not None})
            gq = (_traced_group_queries(folder, group, G, need) if arm == "best_of_m" else
                  _stream_group_rounds(ctx, seed, group, G, T, need))
            for g, e in itertools.product(range(G), p["eps"]):
                r = first[g, e]
                q = None if r is None else float(gq[need.index(r), g])
                points.append({"arm": arm, "seed": seed, "alpha": float(alphas[g]), "eps": e,
                               "queries_gamma2": None if q is None else q / (float(np.sum(group == g)) * N)})
    _verdicts(ctx, p, rounds, at, logG, band, points, G)
    _plot(ctx, p, rounds, gaps, norm, curves)
    ctx.write(markdown_table([r for r in ctx.rows], ["arm", "seed", "alpha", "T", "G", "G_model"]) + "\n\n" +
              markdown_table(points, ["arm", "seed", "alpha", "eps", "queries_gamma2"]))


def _arm_overrides(arm):
    """Options applied last to an arm's runs; the tests swap it for the wrong engines each check must catch."""
    return {}


def _verdicts(ctx, p, rounds, at, logG, band, points, G):
    rows = [r for r in ctx.rows if r["arm"] == "mixture_pg"]
    ok, worst = bool(rows), (0.0, "")
    for (i, h), logs in logG.items():
        a, T = float(p["alphas"][h]), int(rounds[i])
        got = [math.log(r["G"]) for r in rows if r["alpha"] == a and r["T"] == T and r["G"] > 0]
        dev = float(np.mean(got)) - float(logs.mean()) if len(got) == len(ctx.seeds) else math.inf
        ok &= abs(dev) <= band[i, h]
        if abs(dev) / band[i, h] >= worst[0]:
            worst = (abs(dev) / band[i, h], f"α={a:g}, T={T}: log G {dev:+.3f}, band ±{band[i, h]:.3f}")
    T = int(rounds[at[-1]])
    final = [f"α={a:g}: {math.exp(np.mean([math.log(r['G']) for r in rows if r['alpha'] == a and r['T'] == T])):.3g} "
             f"(model {math.exp(logG[at[-1], h].mean()):.3g})" for h, a in enumerate(p["alphas"])] if rows else []
    ctx.verdict("mixture_per_sample", ok, f"G at T = {T} (geometric mean over seeds): {', '.join(final)}; largest "
                f"deviation {worst[0]:.2f} of its band ({worst[1]})")
    for arm, law in EXPECTED.items():
        law_verdict(ctx, f"{arm}_{law}_aic4", law, law_fit([r for r in points if r["arm"] == arm]),
                    p["min_delta_aic"])


def _plot(ctx, p, rounds, gaps, norm, curves):
    """G(T) of the fixed-mixture arm per threshold, every seed, against the model's median and 5–95 % band."""
    plt = pyplot()
    alphas = np.asarray(p["alphas"], float)
    fig, ax = plt.subplots(figsize=(6.6, 4.4))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(alphas)))
    _, group = instance(ctx)
    keep = rounds > 0
    for h, c in enumerate(colours):
        G = gaps[:, :, h] * norm[h] * rounds
        lo, mid, hi = np.quantile(G[:, keep], [0.05, 0.5, 0.95], axis=0)
        ax.fill_between(rounds[keep], lo, hi, color=c, alpha=0.2, lw=0)
        ax.plot(rounds[keep], mid, ":", color=c, lw=1)
        for n, (ev, lik) in enumerate(curves.values()):
            gap = random_iterate_gap(ev, lik, alphas[group] >= alphas[h])
            ax.plot(ev[1:], (gap * norm[h] * ev)[1:], "-", color=c, lw=1,
                    label=f"base likelihood ≥ {alphas[h]:g}" if n == 0 else None)
    ax.plot([], [], "k:", lw=1, label="the exact model (median, 5–95 %)")
    ax.set_xscale("log")
    ax.set_xlabel("round T")
    ax.set_ylabel("G = gap·π_α·α_b·γ²·T")
    ax.set_title("Fixed-mixture PG: the per-sample gap, engine (lines) and model (bands)", fontsize=9)
    ax.legend(fontsize=7)
    ctx.figure(fig, "per-sample-mixture")
    plt.close(fig)
