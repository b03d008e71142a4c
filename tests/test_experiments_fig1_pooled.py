"""fig1-pooled: every registered check against the wrong engine it is meant to catch — the right engine PASSes
every check at the small scale; each wrong variant (a test-only step kernel, or an arm's options swapped at the
Python layer) FAILs the checks that name it — and the bootstrap interval against a direct computation."""

import numpy as np
import pytest

from onlinepg.experiments import fig1_pooled, run_experiment
from figure_check import assert_figure
from wrong_steps import in_arm, wrong_fused_step
from verdicts import verdicts as _verdict


def test_bootstrap_resamples_seeds():
    num, den = [1.0, 3.0, 0.0], [1, 2, 0]
    lo, hi = fig1_pooled.bootstrap_ci(num, den, 20000, 0)
    # the resampled ratios lie between the seeds' own ratios (1 and 1.5), and the pooled value 4/3 is inside
    assert 1.0 <= lo <= 4 / 3 <= hi <= 1.5
    lo, hi = fig1_pooled.bootstrap_ci([2.0, 2.0], [1, 1], 100, 0)
    assert lo == hi == 2.0


def test_the_right_engine_passes_every_check(tmp_path):
    ctx = run_experiment("fig1-pooled", "small", tmp_path / "ok", log=lambda *_: None)
    assert _verdict(ctx) == {"prm_above_orm_off_support": True, "orm_stuck_below_budget": True,
                             "orm_learns_reachable": True}
    assert ctx.seeds == list(range(50, 58))
    assert [f.name for f in ctx.figures] == ["fig1-pooled-pass-at-k.png"]
    assert_figure(ctx.figures[0], min_size=(400, 250))
    assert any("pass@k (exact" in n and "ORM" in n for n in ctx.notes)


WRONG = {   # variant: (how it is swapped in, the checks it must fail)
    "orm_does_not_learn": (("_engine", in_arm("orm", "zero")), {"orm_learns_reachable"}),
    "orm_sign_flipped": (("_engine", in_arm("orm", "flip")), {"orm_learns_reachable"}),
    "prm_does_not_learn": (("_engine", in_arm("prm", "zero")), {"prm_above_orm_off_support",
                                                                  "orm_stuck_below_budget"}),
    # an outcome reward that leaks where the response goes wrong: the ORM arm gets the process reward
    # (supervised steps in its place are no such variant here: 600 of them leave these centres unsolved too)
    "orm_reward_leaks_prefixes": (("_arm_overrides", lambda arm: dict(fig1_pooled.fig1.ARMS["prm"])),
                                  {"orm_stuck_below_budget"}),
}
# the checks a wrong engine of this file fails (tests/test_checks_have_wrong_engines.py reads it)
CAUGHT = set().union(*(c for _, c in WRONG.values()))


@pytest.mark.parametrize("variant", list(WRONG))
def test_each_wrong_engine_fails_its_checks(tmp_path, monkeypatch, variant):
    (name, wrong), caught = WRONG[variant]
    monkeypatch.setattr(fig1_pooled, name, wrong)
    ctx = run_experiment("fig1-pooled", "small", tmp_path / variant, log=lambda *_: None)
    verdict = _verdict(ctx)
    assert {n for n, ok in verdict.items() if not ok} >= caught, verdict


def test_every_check_has_a_wrong_engine(tmp_path):
    named = set().union(*(c for _, c in WRONG.values()))
    assert named == {"prm_above_orm_off_support", "orm_stuck_below_budget", "orm_learns_reachable"}
    assert np.isfinite(fig1_pooled.bootstrap_ci([1.0], [1], 10, 0)).all()


def test_fig1s_own_checks_cannot_tell_a_non_learning_or_descending_orm(tmp_path, monkeypatch):
    """Why fig1's checks are superseded: at its small scale an ORM arm whose step is zeroed or negated gets the
    same three verdicts as the right engine."""
    from onlinepg.experiments import common
    right = common.ExperimentRun.run_arm
    verdicts = {}
    for mode in (None, "zero", "flip"):
        def run_arm(self, arm, cell, seed, over, _mode=mode):
            with (wrong_fused_step(_mode) if _mode and arm == "orm" else fig1_pooled.contextlib.nullcontext()):
                return right(self, arm, cell, seed, over)
        monkeypatch.setattr(common.ExperimentRun, "run_arm", run_arm)
        verdicts[mode] = _verdict(run_experiment("fig1", "small", tmp_path / str(mode), log=lambda *_: None))
    assert verdicts["zero"] == verdicts[None] == verdicts["flip"]
