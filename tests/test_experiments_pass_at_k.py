"""pass-at-k: the right engine passes every registered check at the small scale, and each wrong engine fails the
checks that name it (an outcome reward that leaks where the response goes wrong, a sign-flipped PRM, a pass@k arm
given GRPO's advantages); the crossover rule (reported, not checked) against a hand-made curve."""
import numpy as np
import pytest

from onlinepg.experiments import pass_at_k, run_experiment
from figure_check import assert_figure
from wrong_steps import in_arm
from verdicts import verdicts as _verdict


def test_crossover_is_the_first_k_where_the_base_leads_by_the_margin():
    k = np.array([1, 2, 4, 8])
    assert pass_at_k.crossover(k, np.array([0.5, 0.6, 0.7, 0.8]), np.array([0.2, 0.59, 0.72, 0.9]), 0.01) == 4
    assert pass_at_k.crossover(k, np.array([0.5, 0.6, 0.7, 0.8]), np.array([0.2, 0.605, 0.705, 0.8]), 0.01) is None


def test_the_right_engine_passes_every_check(tmp_path):
    ctx = run_experiment("pass-at-k", "small", tmp_path / "ok", log=lambda *_: None)
    assert _verdict(ctx) == dict.fromkeys(CAUGHT, True)
    assert ctx.seeds == [50, 51]
    assert any(n.startswith("Crossover k*") for n in ctx.notes)
    assert [f.name for f in ctx.figures] == ["pass-at-k.png"]
    assert_figure(ctx.figures[0], min_size=(400, 250))
    rows = {(r["arm"], r["seed"]): r for r in ctx.rows}
    for s in ctx.seeds:       # one budget of samples: every outcome arm made the same number of outcome queries
        assert len({rows[a, s]["orm_queries"] for a in pass_at_k.OUTCOME_ARMS}) == 1


_right = pass_at_k._arm_overrides
WRONG = {   # variant: (how it is swapped in, the checks it must fail)
    # the ORM arm gets the process reward: an outcome reward that leaks where the response goes wrong
    "orm_reward_leaks_prefixes": (("_arm_overrides", lambda arm, p: _right("prm" if arm == "orm" else arm, p)),
                                  {"prm_above_outcome_below_budget", "prm_above_outcome_at_large_k"}),
    "prm_sign_flipped": (("_engine", in_arm("prm", "flip")), {"prm_above_outcome_below_budget",
                                                               "prm_above_outcome_at_large_k"}),
    "pass_k_is_grpo": (("_arm_overrides", lambda arm, p: _right("grpo" if arm == "pass_k" else arm, p)),
                       {"pass_k_trades_pass_at_1"}),
}
# the checks a wrong engine of this file fails (tests/test_checks_have_wrong_engines.py reads it)
CAUGHT = set().union(*(c for _, c in WRONG.values()))


@pytest.mark.parametrize("variant", list(WRONG))
def test_each_wrong_engine_fails_its_checks(tmp_path, monkeypatch, variant):
    (name, wrong), caught = WRONG[variant]
    monkeypatch.setattr(pass_at_k, name, wrong)
    ctx = run_experiment("pass-at-k", "small", tmp_path / variant, log=lambda *_: None)
    verdict = _verdict(ctx)
    assert {n for n, ok in verdict.items() if not ok} >= caught, verdict
