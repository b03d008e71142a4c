"""barrier-zero — the base-model barrier with a learner that starts at w = 0 and explores from the base q₀
(``algo.init = "zero"``; docs/theory.md §5, §6). Supersedes the checks of ``barrier``, whose learners started at the
base, so that on-policy sampling was already exploration from q₀ and the contrast 1/α versus k^N could not show.

The prediction is an exact model of this instance, computed before the runs. On cells every context has its own
weights per position, and every update of a context is the same step g = ∇ log p_w(y*|x) (best-of-m steps toward
y* when it finds it; on-policy PG with 0/1 rewards and no baseline moves only when its sample is y*, and then
along the same g). From w = 0 all positions of a context stay alike: after t updates each correct token has
probability s_t with logit gap z_t, s_t = e^{z_t}/(e^{z_t} + k − 1),

    ‖g‖² = N(1 − s_t)²·k/(k − 1),   η_t = 1/(4 + 2‖g‖²),   z_{t+1} = z_t + η_t(1 − s_t)·k/(k − 1),

and the context's likelihood is P_t = s_t^N (``likelihood_after_updates``; tests/test_experiments_barrier_zero.py
checks it against the engine to 1e-12). A visit of a context in state t succeeds with probability σ_t and costs
queries: on-policy σ_t = P_t, one query; best-of-m σ_t = P_t + (1 − P_t)(1 − (1 − a)^m) with a = ½(p_tok^N + k^−N)
the mixture's mass on y*, one query plus, when the on-policy draw fails, the mixture draws up to the first hit
(``visit_costs``). Contexts are visited uniformly (a Poisson clock of rate 1/M per round, the one approximation);
the run ends at the first evaluation whose exact test error 1 − mean_j P_{t_j} is ≤ ε (``simulate``). The model's
distribution over replicates gives each check's prediction and its statistical tolerance.
"""
import functools
import itertools
import math

import numpy as np

from .barrier import mixture_mass, predicted_slope, require_base_above_uniform
from .common import first_reaching, fit_slope, markdown_table, mean_over_seeds, model_band, pyplot

ARMS = {"onpolicy": ({"algo.name": "pg", "algo.behaviour": "policy"}, "orm_queries"),
        "best_of_m": ({"algo.name": "best_of_m"}, "orm_queries"),
        "prm": ({"algo.name": "pg_process", "algo.variant": "explore"}, "prm_queries")}
MODELLED = ("onpolicy", "best_of_m")
LABELS = {"onpolicy": "outcome reward, on-policy from w = 0", "best_of_m": "outcome reward, best-of-m from w = 0",
          "prm": "process reward, Algorithm 2 from w = 0"}


def likelihood_after_updates(k, N, floor, z0=0.0, most=None):
    """P_t = s_t^N for t = 0, 1, … until 1 − P_t ≤ floor (or ``most`` + 1 values), from logit gap z0 (module
    docstring: z0 = 0 is w = 0)."""
    z, out = z0, []
    while True:
        s = 1.0 / (1.0 + (k - 1) * math.exp(-z))
        out.append(s ** N)
        if 1.0 - out[-1] <= floor or (most is not None and len(out) > most):
            return np.array(out)
        gsq = N * (1.0 - s) ** 2 * k / (k - 1)
        z += (1.0 - s) * k / (k - 1) / (4.0 + 2.0 * gsq)


def visit_costs(arm, P, a, m):
    """(σ, queries of a failed visit, expected queries of a successful one) per state, for arm at likelihoods P."""
    if arm == "onpolicy":
        return P, np.ones_like(P), np.ones_like(P)
    hit = 1.0 - (1.0 - a) ** m                                   # the mixture finds y* within m draws
    sigma = P + (1.0 - P) * hit
    draws_if_hit = (1.0 - (1.0 - a) ** m * (1.0 + m * a)) / a    # E[K·1{K ≤ m}], K ~ Geometric(a)
    success = (P * 1.0 + (1.0 - P) * (hit + draws_if_hit)) / sigma
    return sigma, np.full_like(P, 1.0 + m), success


def simulate(arm, k, N, M, p_tok, m, eps, eval_every, reps, seed, chunk_cells=1 << 22):
    """Queries to the first evaluation with test error ≤ eps, one value per replicate (module docstring). A
    context's states are followed until its own error is ≤ eps/10 (it then counts as eps/10: the run's stop is
    delayed by at most that); replicates go in chunks of at most chunk_cells states."""
    P = likelihood_after_updates(k, N, eps / 10.0)
    costs = visit_costs(arm, P[:-1], mixture_mass(p_tok, k, N), m)
    return visit_clock(arm, M, [(M, P, *costs)], 1.0 - P[0], [eps], eval_every, reps, seed,
                       chunk_cells=chunk_cells)[:, 0]


def visit_clock(arm, M, groups, err0, targets, eval_every, reps, seed, thinned=False, chunk_cells=1 << 22):
    """The Poisson clock over M contexts (module docstring): queries at the first evaluation whose test error is
    ≤ ε, for each ε of ``targets``, float[reps, len(targets)]. ``groups`` is [(contexts, P, σ, failed-visit cost,
    successful-visit cost)] per group of alike contexts (P their likelihood states, the rest ``visit_costs``'s per
    state), ``err0`` the test error before any update. ``thinned``: the current state's visits before T, all
    failed, count (1 − σ)(T − t₀)/M, their expected number given that the next success comes after T; without it
    (T − t₀)/M, exact only as σ → 0 (barrier-zero's registered model)."""
    rng = np.random.default_rng(seed)
    per = max(1, chunk_cells // sum(n * len(sigma) for n, _, sigma, _, _ in groups))
    out = []
    for lo in range(0, reps, per):
        r = min(reps, lo + per) - lo
        draws = []
        for n, P, sigma, fail, success in groups:
            V = rng.geometric(sigma, size=(r, n, len(sigma))).astype(float)    # visits spent in each state
            draws.append((V, np.cumsum(rng.gamma(V, M), axis=2)))               # round of each successful visit
        leave = np.concatenate([lv.reshape(r, -1) for _, lv in draws], axis=1)
        drop = np.concatenate([np.broadcast_to(np.diff(P) / M, (r, n, len(P) - 1)).reshape(r, -1)
                               for n, P, *_ in groups], axis=1)                  # test error drop of each update
        order = np.argsort(leave, axis=1)
        times = np.take_along_axis(leave, order, axis=1)
        err = err0 - np.cumsum(np.take_along_axis(drop, order, axis=1), axis=1)
        cols = []
        for eps in targets:
            first = np.argmax(err <= eps, axis=1)
            T = np.ceil(times[np.arange(r), first] / eval_every) * eval_every
            if arm == "onpolicy":
                cols.append(T)                                                  # one query per round
                continue
            Tb = T[:, None, None]
            spent = np.zeros(r)
            for (V, lv), (n, P, sigma, fail, success) in zip(draws, groups):
                done = lv <= Tb                                                 # states left by round T
                start = np.concatenate([np.zeros((r, n, 1)), lv[:, :, :-1]], axis=2)
                current = ~done & (start <= Tb)                                 # each context's state at T
                failed = current * (Tb - start) / M                             # its failed visits so far
                if thinned:
                    failed = failed * (1.0 - sigma)
                spent += (((V - 1.0) * fail + success) * done + failed * fail).sum(axis=(1, 2))
            cols.append(spent)
        out.append(np.stack(cols, axis=1))
    return np.concatenate(out)


def _model(p, k, M_of):
    """Per arm: {N: model log-queries (replicates)} and the slope of log(queries/M) of S-seed means."""
    out = {}
    for arm in MODELLED:
        logs = {}
        for N in p["N"]:
            logs[N] = _model_logs(arm, k, N, M_of[N], p["p_tok"], _m(p, N), p["eps"], _eval_every(p, arm, k, N),
                                  p["model_reps"], p["model_seed"] + N)
        X = np.array(p["N"], float)
        Y = np.array([logs[N] - math.log(M_of[N]) for N in p["N"]])          # (grid, reps)
        slopes = np.polyfit(X, Y, 1)[0]                                       # one slope per replicate
        out[arm] = {"logs": logs, "slope": float(slopes.mean()), "slope_sd": float(slopes.std(ddof=1))}
    return out


@functools.lru_cache(maxsize=64)
def _model_logs(*args):
    """log of ``simulate(*args)``, kept for the process (the tests run one scale many times)."""
    logs = np.log(simulate(*args))
    logs.flags.writeable = False
    return logs


def _m(p, N):
    return math.ceil(p["m_factor"] / p["p_tok"] ** N)


def _eval_every(p, arm, k, N):
    """Evaluations fine enough that their spacing is a small part of the queries measured (and modelled)."""
    return {"onpolicy": max(1, k ** N // 256), "best_of_m": 1, "prm": 2}[arm]


def _arm_overrides(arm, N):
    """The engine options of an arm at length N, applied last; the tests swap it for the wrong engines each check
    must catch."""
    return {**ARMS[arm][0], "algo.init": "zero"}


def run(ctx):
    from ..config import margin_contexts
    p = ctx.params
    k = ctx.shared.task.k
    require_base_above_uniform("barrier-zero", p["p_tok"], k)
    gamma = ctx.shared.task.gamma
    M_of = {N: margin_contexts("cells", k, N, 0, gamma) for N in p["N"]}
    S = len(ctx.seeds)
    model = _model(p, k, M_of)
    tol = {arm: model_band(model[arm]["slope_sd"], S, p["slope_margin"]) for arm in MODELLED}
    mix = predicted_slope(p["p_tok"], k, p["N"])
    ctx.predict("onpolicy_kN", "on-policy ORM from w = 0: slope of log(queries/M) to error ε against N (mean of "
                "the per-seed fits)", f"{model['onpolicy']['slope']:.3f} per token, the model's (log k = "
                f"{math.log(k):.3f}: each context waits for a k^−N chance)",
                f"± {tol['onpolicy']:.3f} (3 sd of a {S}-seed mean under the model + {p['slope_margin']})",
                f"a learner started at the base pays p_tok^−N instead (slope log 1/p_tok = "
                f"{-math.log(p['p_tok']):.3f}), outside the band")
    ctx.predict("best_of_m_mixture_rate", "best-of-m from w = 0: slope of log(queries/M) against N",
                f"{model['best_of_m']['slope']:.3f} per token, the model's (the mixture's rate log 1/½(p^N + k^−N) "
                f"has slope {mix:.3f}; the rest is the updates a context needs, which grow with N)",
                f"± {tol['best_of_m']:.3f} (3 sd of a {S}-seed mean under the model + {p['slope_margin']})",
                "an exploration that ignored q₀ (uniform only) has the on-policy arm's slope, about log k")
    ctx.predict("levels", "both ORM arms, every N: the seeds' mean of log(queries to ε)",
                "the model's mean of log queries at that N (table below)",
                f"± (3 sd of a {S}-seed mean under the model + log {p['level_margin']}) at every N",
                "a wrong update rule (η), sampler or exploration mass moves the level by more than the margin")
    ctx.predict("prm_polynomial", "PRM Algorithm 2 from w = 0: log-log slope of queries to ε against N",
                "≤ 1 (N·min(1/Q^TL, k)/γ² + 1/(εγ²): linear in N plus a constant)",
                f"≤ 1 + {p['tol_prm_loglog']}", "the on-policy ORM arm's log-log slope must exceed the same limit")
    with ctx.stage("ORM on-policy, ORM best-of-m and PRM from w = 0 to test error ε"):
        for N, seed, arm in itertools.product(p["N"], ctx.seeds, ARMS):
            alpha = p["p_tok"] ** N
            over = {"task.N": N, "base.alpha": alpha, "algo.m": _m(p, N), "algo.m_tok": p["m_tok"],
                    "task.seed": seed, "run.seed": seed, "run.rounds": p["max_rounds"],
                    "run.eval_every": _eval_every(p, arm, k, N), "run.target_error": p["eps"],
                    **_arm_overrides(arm, N)}
            s, folder = ctx.run_arm(arm, {"N": N}, seed, over)
            q = first_reaching(folder, p["eps"], ARMS[arm][1])
            ctx.record(arm, {"N": N}, seed, M=M_of[N], alpha=alpha, queries=q, reached=q is not None,
                       rounds=s["rounds"],
                       model_queries=(float(np.exp(model[arm]["logs"][N].mean())) if arm in model else None))
    slopes = _verdicts(ctx, p, k, model, tol, S)
    agg = mean_over_seeds(ctx.rows, ["arm", "N"], ["M", "alpha", "queries", "model_queries", "rounds"])
    agg.sort(key=lambda r: (r["arm"], r["N"]))
    _plot(ctx, agg, k)
    ctx.write(markdown_table(agg, ["arm", "N", "M", "alpha", "queries", "model_queries", "rounds", "seeds"]),
              slopes)


def _verdicts(ctx, p, k, model, tol, S):
    rows = ctx.rows
    missing = sorted({(r["arm"], r["N"]) for r in rows if not r["reached"]})
    if missing:
        ctx.notes.append(f"runs that did not reach ε within max_rounds = {p['max_rounds']}: {missing} (a check "
                         "that needs them FAILs)")
    fits = {}
    for arm in ARMS:
        rs = [r for r in rows if r["arm"] == arm and r["reached"]]
        fits[arm] = fit_slope([r["N"] for r in rs], [r["queries"] / r["M"] for r in rs], [r["seed"] for r in rs],
                              f"{arm}: log(queries/M) vs N", f"{model[arm]['slope']:.3f}" if arm in model else "—",
                              log_x=False)
    loglog = {arm: fit_slope([r["N"] for r in rows if r["arm"] == arm and r["reached"]],
                             [r["queries"] for r in rows if r["arm"] == arm and r["reached"]],
                             [r["seed"] for r in rows if r["arm"] == arm and r["reached"]],
                             f"{arm}: log queries vs log N", "≤ 1" if arm == "prm" else "> 1")
              for arm in ("prm", "onpolicy")}
    for arm, name in (("onpolicy", "onpolicy_kN"), ("best_of_m", "best_of_m_mixture_rate")):
        f, pred = fits[arm], model[arm]["slope"]
        ok = not any(a == arm for a, _ in missing) and abs(f["slope"] - pred) <= tol[arm]
        ctx.verdict(name, ok, f"slope {f['slope']:.3f} (95% CI [{f['lo']:.3f}, {f['hi']:.3f}]) against the "
                    f"model's {pred:.3f} ± {tol[arm]:.3f}")
    worst, parts, ok = None, [], not any(a in MODELLED for a, _ in missing)
    for arm in MODELLED:
        for N in p["N"]:
            got = [math.log(r["queries"]) for r in rows if r["arm"] == arm and r["N"] == N and r["reached"]]
            mu = float(model[arm]["logs"][N].mean())
            band = model_band(float(model[arm]["logs"][N].std(ddof=1)), S, math.log(p["level_margin"]))
            dev = (float(np.mean(got)) - mu) if got else math.inf
            ok &= abs(dev) <= band
            parts.append(f"{arm} N={N}: {dev:+.3f} (band ±{band:.3f})")
            if worst is None or abs(dev) / band > worst[0]:
                worst = (abs(dev) / band, f"{arm} N={N}")
    ctx.verdict("levels", ok, f"mean log queries − model's: {'; '.join(parts)}; worst {worst[1]} at "
                f"{worst[0]:.2f} of its band")
    limit = 1.0 + p["tol_prm_loglog"]
    prm, orm = loglog["prm"], loglog["onpolicy"]
    ctx.verdict("prm_polynomial", not any(a == "prm" for a, _ in missing) and prm["slope"] <= limit < orm["slope"],
                f"PRM log-log slope {prm['slope']:.3f} (95% CI [{prm['lo']:.3f}, {prm['hi']:.3f}]) against the "
                f"limit {limit:.3f}; on-policy ORM log-log slope {orm['slope']:.3f}")
    ctx.notes.append(f"The barrier from w = 0: on-policy ORM pays about k^N per context (slope "
                     f"{fits['onpolicy']['slope']:.3f} per token against log k = {math.log(k):.3f}), best-of-m the "
                     f"exploration mixture's rate ({fits['best_of_m']['slope']:.3f}); at N = {max(p['N'])} "
                     f"best-of-m needs {_ratio(rows, max(p['N']))} times fewer queries than on-policy ORM.")
    ctx.notes.append("In the table, `queries` is the seeds' arithmetic mean and `model_queries` the model's geometric "
                     "mean over its replicates (the checks compare means of log queries).")
    return list(fits.values()) + list(loglog.values())


def _ratio(rows, N):
    mean = lambda arm: np.mean([r["queries"] for r in rows if r["arm"] == arm and r["N"] == N and r["reached"]]  # noqa: E731
                               or [np.nan])
    return f"{mean('onpolicy') / mean('best_of_m'):.3g}"


def _plot(ctx, agg, k):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.6, 4.6))
    styles = {"onpolicy": "o-", "best_of_m": "^-", "prm": "s-"}
    for arm in ARMS:
        rows = [r for r in agg if r["arm"] == arm and r["queries"]]
        ax.plot([r["N"] for r in rows], [r["queries"] for r in rows], styles[arm], label=LABELS[arm])
        if arm in MODELLED:
            ax.plot([r["N"] for r in rows], [r["model_queries"] for r in rows], "k:", lw=1)
    ax.plot([], [], "k:", lw=1, label="the exact model (geometric mean over replicates)")
    ax.set_yscale("log")
    ax.set_xlabel("response length N (tokens)")
    ax.set_ylabel(f"reward queries to test error ≤ {ctx.params['eps']}")
    ax.set_title(f"The barrier from w = 0 (k = {k}, p_tok = {ctx.params['p_tok']})")
    ax.legend(fontsize=7)
    ctx.figure(fig, "barrier-zero")
    plt.close(fig)
