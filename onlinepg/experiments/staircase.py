"""staircase — with a staircase base, the outcome-reward error after T queries plateaus at the mass of the groups
those queries cannot reach (docs/theory.md §5, §6).

Best-of-m or the fixed mixture learns a context of base likelihood α after about 1/(α γ²) outcome queries (the
1/γ² of the rates, with γ = 1/√(MN) the instance's exact margin: T queries total, not T/M per context). So at a
budget T = h/γ², a group with α_g·h well below 1 is still unsolved and one with α_g·h well above 1 is solved.
With a factor ``c`` either side: L(h) = the mass of the groups with α_g·h < 1/c and U(h) = the mass of the
groups with α_g·h ≤ c. The barrier is a floor — no outcome-reward arm can end below L(h) — and best-of-m matches
it — at the largest budget it is at most U(h). (The fixed mixture pays 1/(αγ²ε) to reach error ε inside a solved
group, so only the floor is claimed for it.) Every α_g is above k^−N, so the uniform half of the exploration
mixture never sets the rate. The process-reward arm is the control: from the budget its own rate allows,
h ≥ c·N·min(1/Q^TL, k), it must pass below L(h).
"""
import itertools

import numpy as np

from .. import config as C
from ..build import build_task
from ..errors import ConfigError
from ..tasks import staircase_base
from ..trace import read_table
from .common import markdown_table, pyplot

ORM_ARMS = {"mixture": {"algo.name": "pg", "algo.behaviour": "mixture"}}
PRM_ARM = ("prm_explore", {"algo.name": "pg_process", "algo.variant": "explore"})


def _orm_arms(p):
    arms = dict(ORM_ARMS)
    for m in p["m"]:
        arms[f"best_of_m_{m}"] = {"algo.name": "best_of_m", "algo.m": m}
    return arms


def _instance(ctx, p):
    """(exact γ², group masses float64[G]) of the configured staircase instance."""
    cfg = C.resolve(C.apply_overrides(ctx.config, ctx.config_sets))
    task = build_task(cfg)
    _, group = staircase_base(task, p["alphas"], p["fractions"])
    return task.gamma ** 2, np.bincount(group, minlength=len(p["alphas"])) / task.M, task


def bands(alphas, masses, h, c):
    """(L, U): the mass of the groups surely unsolved (α·h < 1/c) and of those not surely solved (α·h ≤ c)."""
    a, m = np.asarray(alphas, float), np.asarray(masses, float)
    return float(m[a * h < 1.0 / c].sum()), float(m[a * h <= c].sum())


def _error_at(ev, column, budget):
    """Test error at the first evaluation whose query count reached ``budget`` (None if the run never did)."""
    for q, err in zip(ev[column], ev["test_error"]):
        if q >= budget:
            return float(err), float(q)
    return None, None


def run(ctx):
    p = ctx.params
    gamma2, masses, task = _instance(ctx, p)
    floor = float(task.k) ** -task.N
    if min(p["alphas"]) <= p["min_alpha_over_uniform"] * floor:
        raise ConfigError(f"staircase: every alpha must exceed {p['min_alpha_over_uniform']}·k^−N = "
                          f"{p['min_alpha_over_uniform'] * floor:.3g} (else the uniform half of the mixture sets the "
                          f"rate), got {min(p['alphas']):g}")
    c, tol = p["factor"], p["tol"]
    band = {h: bands(p["alphas"], masses, h, c) for h in p["horizons"]}
    h_max = max(p["horizons"])
    h_prm = c * task.N * min(min(p["alphas"]) ** (-1.0 / task.N), task.k)
    ctx.predict("orm_floor", "test error of every outcome-reward arm (fixed mixture; best-of-m, m = "
                f"{p['m']}) at budgets T = h/γ², h = {p['horizons']} (γ² = {gamma2:.4g})",
                "≥ L(h): " + ", ".join(f"h={h}: {lo:.3f}" for h, (lo, _) in band.items()), f"− {tol}; c = {c}",
                "the process-reward arm must end below the same floor (prm_passes_plateau)")
    ctx.predict("best_of_m_matches", f"test error of every best-of-m arm at the largest budget h = {h_max}",
                f"≤ U({h_max}) = {band[h_max][1]:.3f}", f"+ {tol}",
                "a learner stuck at the floor for a wrong reason (no exploration, no learning) stays above U")
    ctx.predict("prm_passes_plateau", "test error of the process-reward arm (Algorithm 2) at the budgets with "
                f"h ≥ c·N·min(1/Q^TL, k) = {h_prm:.3g} and L(h) > tol",
                "below the outcome-reward floor L(h)", f"< L(h) − {tol}",
                "an outcome-reward arm below L(h) fails orm_floor")
    arms = {**_orm_arms(p), PRM_ARM[0]: PRM_ARM[1]}
    budget = int(np.ceil(max(p["horizons"]) / gamma2))
    t_min = min(p["horizons"]) / gamma2
    with ctx.stage(f"outcome-reward arms and process-reward Algorithm 2 to {budget} queries"):
        for seed, (arm, over) in itertools.product(ctx.seeds, arms.items()):
            column = "prm_queries" if arm == PRM_ARM[0] else "orm_queries"
            per_round = 1 + over.get("algo.m", 0) if arm != PRM_ARM[0] else task.N * p["m_tok"]
            run_over = {**over, "base.alphas": p["alphas"], "base.fractions": p["fractions"],
                        "algo.m_tok": p["m_tok"], "task.seed": seed, "run.seed": seed, "run.rounds": budget,
                        "run.max_queries": budget,
                        "run.eval_every": max(1, int(t_min // (p["evals_per_horizon"] * per_round)))}
            s, folder = ctx.run_arm(arm, {}, seed, run_over)
            ev = read_table(folder / "eval").to_pydict()
            for h in p["horizons"]:
                err, q = _error_at(ev, column, h / gamma2)
                lo, hi = band[h]
                ctx.record(arm, {"h": h}, seed, queries_budget=h / gamma2, queries=q, test_error=err, L=lo, U=hi)
    _verdicts(ctx, p, h_prm)
    ctx.notes.append("best-of-m spends up to m + 1 queries on every round whose context it cannot find "
                     "(α_g·m ≪ 1): at a fixed total budget those queries are taken from the reachable groups, so a "
                     "larger m reaches U(h) later in queries, though in fewer rounds.")
    _plot(ctx, p, gamma2, masses, arms)
    rows = [{"arm": r["arm"], "h": r["h"], "seed": r["seed"], "queries": r["queries"], "test_error": r["test_error"],
             "L": r["L"], "U": r["U"]} for r in ctx.rows]
    ctx.write(markdown_table(rows, ["arm", "seed", "h", "queries", "test_error", "L", "U"]))


def _fmt(r):
    err = "not reached" if r["test_error"] is None else f"{r['test_error']:.4g}"
    return f"{r['arm']} h={r['h']} seed {r['seed']}: {err} (L = {r['L']:.3f}, U = {r['U']:.3f})"


def _verdicts(ctx, p, h_prm):
    tol = p["tol"]
    orm = [r for r in ctx.rows if r["arm"] != PRM_ARM[0]]
    bad = [r for r in orm if r["test_error"] is None or r["test_error"] < r["L"] - tol]
    ctx.verdict("orm_floor", not bad, f"{len(orm) - len(bad)} of {len(orm)} (arm, seed, h) points at or above the "
                "floor" + ("; below: " + "; ".join(_fmt(r) for r in bad) if bad else ""))
    last = [r for r in orm if r["arm"].startswith("best_of_m") and r["h"] == max(p["horizons"])]
    ctx.verdict("best_of_m_matches", all(r["test_error"] is not None and r["test_error"] <= r["U"] + tol
                                         for r in last), "; ".join(_fmt(r) for r in last))
    prm = [r for r in ctx.rows if r["arm"] == PRM_ARM[0] and r["L"] > tol and r["h"] >= h_prm]
    ok = bool(prm) and all(r["test_error"] is not None and r["test_error"] < r["L"] - tol for r in prm)
    ctx.verdict("prm_passes_plateau", ok, "; ".join(
        f"h={r['h']} seed {r['seed']}: {r['test_error'] if r['test_error'] is None else round(r['test_error'], 4)}"
        f" (L = {r['L']:.3f})" for r in prm) or "no horizon has L(h) > tol")


def _plot(ctx, p, gamma2, masses, arms):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    seed = ctx.seeds[0]
    for arm in arms:
        column = "prm_queries" if arm == PRM_ARM[0] else "orm_queries"
        ev = read_table(ctx.out / "runs" / arm / f"seed={seed}" / "eval").to_pydict()
        q = np.asarray(ev[column], float) * gamma2
        keep = q > 0
        ax.plot(q[keep], np.asarray(ev["test_error"])[keep], lw=1.2, ls="--" if arm == PRM_ARM[0] else "-",
                label=arm)
    hs = np.geomspace(min(p["horizons"]) / 10, max(p["horizons"]), 200)
    lo_hi = np.array([bands(p["alphas"], masses, h, p["factor"]) for h in hs])
    ax.fill_between(hs, lo_hi[:, 0], lo_hi[:, 1], color="grey", alpha=0.2, step="mid",
                    label=f"predicted ORM band [L(h), U(h)], c = {p['factor']}")
    for h in p["horizons"]:
        ax.axvline(h, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("reward queries × γ²  (h; ORM: outcome checks, PRM: prefix checks)")
    ax.set_ylabel("exact test error 1 − E p(y*|x)")
    ax.set_title(f"Staircase base (α_g = {p['alphas']}), seed {seed}")
    ax.legend(fontsize=7, loc="lower left")
    ctx.figure(fig, "staircase")
    plt.close(fig)
