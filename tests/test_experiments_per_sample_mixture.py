"""per-sample-mixture: the model's pieces, and every registered check against the wrong engine it is meant to
catch (an arm's options swapped at the Python layer); the right engine PASSes every check at the small scale."""
import types

import numpy as np
import pytest

from figure_check import assert_figure
from onlinepg.experiments import per_sample, per_sample_mixture as psm, run_experiment
from onlinepg.schedule import Schedule
from verdicts import verdicts as _verdict


def test_eval_rounds_are_the_schedules():
    T, every, n = 5000, 700, 6
    cfg = types.SimpleNamespace(run=types.SimpleNamespace(rounds=T, eval_every=every, track_every=0,
                                                          eval_log_points=n))
    sched = Schedule(cfg)
    direct = [0] + [t for t in range(1, T + 1) if sched.is_track(t)]
    assert psm.eval_rounds(T, every, n).tolist() == direct


def test_model_gaps_of_a_non_learning_start_and_of_a_direct_simulation():
    """With tiny α_b nothing moves: the gap is 1 − α; and against a round-by-round simulation of one group."""
    k, N, M = 4, 2, 3
    group = np.zeros(M, np.int64)
    rounds = np.array([0, 10, 20, 40])
    g = psm.model_gaps(k, N, M, group, [1e-9], rounds, 5, 0)
    np.testing.assert_allclose(g[:, 1:, 0], 1 - 1e-9, rtol=1e-6)
    # one context, α = 0.25: the likelihood after n updates from the base gap, n ~ Binomial(t, α_b)
    alpha, reps = 0.25, 4000
    rounds = np.array([0, 5, 10, 20])
    model = psm.model_gaps(k, N, 1, np.zeros(1, np.int64), [alpha], rounds, reps, 1)[:, -1, 0].mean()
    from onlinepg.experiments.barrier_zero import likelihood_after_updates
    s = alpha ** (1 / N)
    P = likelihood_after_updates(k, N, 0.0, z0=np.log(s * (k - 1) / (1 - s)), most=40)
    rng = np.random.default_rng(5)
    ab = 0.5 * (alpha + k ** -N)
    direct = []
    for _ in range(reps):
        n, lik = 0, []
        for t in range(20):
            lik.append(P[n])
            n += rng.random() < ab
        direct.append(1 - np.mean(lik))      # the random iterate over rounds 0 … 19 (every round evaluated)
    assert per_sample.random_iterate_gap is psm.random_iterate_gap
    # the model evaluates at rounds 0, 5, 10 only (likelihood held between): compare with that Riemann sum
    assert model == pytest.approx(np.mean(direct), abs=0.03)


def test_the_right_engine_passes_every_check(tmp_path):
    ctx = run_experiment("per-sample-mixture", "small", tmp_path / "ok", log=lambda *_: None)
    assert [p.name for p in ctx.figures] == ["per-sample-mixture.png"]
    assert_figure(ctx.figures[0], min_size=(400, 250))
    assert _verdict(ctx) == {"mixture_per_sample": True, "best_of_m_additive_aic4": True,
                             "mixture_pg_multiplicative_aic4": True}


WRONG = {   # variant: (arms kept, the options of the swapped arm, the checks it must fail)
    "mixture_7x_slower": (("mixture_pg",), "mixture_pg", {"algo.lr_rule": "constant", "algo.lr": 0.03},
                          {"mixture_per_sample"}),
    "mixture_explores_from_base_only": (("mixture_pg",), "mixture_pg", {"algo.behaviour": "base"},
                                        {"mixture_per_sample"}),
    "mixture_behaviour_learns": (("mixture_pg",), "mixture_pg", {"algo.behaviour": "eps_mixture", "algo.eps": 0.5},
                                 {"mixture_per_sample", "mixture_pg_multiplicative_aic4"}),
    "best_of_m_without_exploration": (("mixture_pg", "best_of_m"), "best_of_m",
                                      {"algo.name": "pg", "algo.behaviour": "mixture"}, {"best_of_m_additive_aic4"}),
}
# the checks a wrong engine of this file fails (tests/test_checks_have_wrong_engines.py reads it)
CAUGHT = set().union(*(c for *_, c in WRONG.values()))


@pytest.mark.parametrize("variant", list(WRONG))
def test_each_wrong_engine_fails_its_checks(tmp_path, monkeypatch, variant):
    keep, arm, options, caught = WRONG[variant]
    monkeypatch.setattr(psm, "ARMS", {a: psm.ARMS[a] for a in keep})
    monkeypatch.setattr(psm, "_arm_overrides", lambda a: options if a == arm else {})
    # one seed: the band of a one-seed mean is wider, so a wrong engine that still fails it fails it with room
    ctx = run_experiment("per-sample-mixture", "small", tmp_path / variant, seeds=1, log=lambda *_: None)
    verdict = _verdict(ctx)
    assert {n for n, ok in verdict.items() if not ok} >= caught, verdict


def test_every_check_has_a_wrong_engine():
    assert set().union(*(c for *_, c in WRONG.values())) == {"mixture_per_sample", "best_of_m_additive_aic4",
                                                             "mixture_pg_multiplicative_aic4"}
