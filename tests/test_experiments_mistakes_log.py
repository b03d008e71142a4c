"""mistakes-log: the law's shape, and every registered check against the wrong engine it is meant to catch (an
arm's options swapped at the Python layer); the right engine PASSes every check at the small scale."""
import math

import pytest

from figure_check import assert_figure
from onlinepg.experiments import mistakes_log, run_experiment
from verdicts import verdicts as _verdict


def test_law_and_its_slope():
    assert mistakes_log.law(2, 10.0, 10.0 * math.e) == pytest.approx(0.5 * 10 * 2)
    p = {"k": [2, 3, 4], "N": [1, 2, 3], "gamma": [0.25, 0.125], "horizon_factor": 100}
    assert mistakes_log.predicted_slope(p, 403201) == pytest.approx(0.935, abs=5e-4)


def test_the_right_engine_passes_every_check(tmp_path):
    ctx = run_experiment("mistakes-log", "small", tmp_path / "ok", log=lambda *_: None)
    assert [p.name for p in ctx.figures] == ["mistakes-log.png"]
    assert_figure(ctx.figures[0], min_size=(400, 250))
    assert _verdict(ctx) == {"log_law": True, "log_slope": True}
    assert ctx.seeds == [50, 51, 52]
    for r in ctx.rows:          # sampled mistakes scatter around the expected ones (a sum of Bernoulli draws)
        if r["arm"] == "pg_uniform":
            assert abs(r["mistakes_sampled"] - r["mistakes_expected"]) <= 4 * math.sqrt(r["mistakes_expected"])


WRONG = {   # the learner's options in the wrong engine, and the checks it must fail
    "does_not_learn": ({"algo.lr_rule": "constant", "algo.lr": 1e-12}, {"log_law", "log_slope"}),
    "told_ystar": ({"algo.name": "sgd"}, {"log_law"}),
    "rate_pays_N": ({"algo.lr_rule": "constant", "algo.lr": 0.05}, {"log_law"}),
}
# the checks a wrong engine of this file fails (tests/test_checks_have_wrong_engines.py reads it)
CAUGHT = set().union(*(c for _, c in WRONG.values()))


@pytest.mark.parametrize("variant", list(WRONG))
def test_each_wrong_engine_fails_its_checks(tmp_path, monkeypatch, variant):
    options, caught = WRONG[variant]
    monkeypatch.setattr(mistakes_log, "_arm_overrides",
                        lambda arm: options if arm == "pg_uniform" else dict(mistakes_log.ARMS[arm]))
    ctx = run_experiment("mistakes-log", "small", tmp_path / variant, log=lambda *_: None)
    verdict = _verdict(ctx)
    assert {n for n, ok in verdict.items() if not ok} >= caught, verdict
