"""The lower-bound and per-sample experiments at --scale small, and the helpers they compute predictions with."""
import json

import numpy as np
import pytest

from onlinepg.experiments import run_experiment
from test_experiments import _outputs_ok


def _verdicts(ctx, names):
    pre = [c["name"] for c in json.loads((ctx.out / "checks.json").read_text())["checks"]]
    assert pre == names
    verdict = {c["name"]: c for c in json.loads((ctx.out / "verdict.json").read_text())["checks"]}
    assert set(verdict) == set(names) and all(isinstance(c["passed"], bool) for c in verdict.values())
    text = (ctx.out / "results.md").read_text()
    assert sum(line.startswith(("- PASS", "- FAIL")) for line in text.split("## Verdict")[1].splitlines()) == len(names)
    return {n: c["passed"] for n, c in verdict.items()}


def test_search_floor_is_the_expected_mistakes_of_search_without_replacement():
    from onlinepg.experiments.mistakes_lower_bound import search_floor, search_mistakes
    K = 6
    visits = np.array([0, 1, 3, 6, 50])
    # brute force: the wrong guesses before y* are uniform on 0..K−1; a context visited n times pays min(n, U)
    exact = sum(np.mean([min(n, u) for u in range(K)]) for n in visits)
    assert search_floor(visits, K) == pytest.approx(exact)
    assert search_floor([10**6] * 4, K) == pytest.approx(4 * (K - 1) / 2)        # saturated: M(K − 1)/2
    draws = [search_mistakes(visits, K, np.random.default_rng(s)) for s in range(4000)]
    assert np.mean(draws) == pytest.approx(exact, rel=0.03)


def test_mistakes_lower_bound(tmp_path):
    ctx = run_experiment("mistakes-lower-bound", "small", tmp_path / "mlb", log=lambda *_: None)
    _outputs_ok(ctx)
    verdict = _verdicts(ctx, ["floor", "upper"])
    assert verdict["floor"]
    rows = ctx.rows
    assert len({r["rounds"] for r in rows}) == 1                     # one horizon for every instance
    for r in rows:
        K, M = r["k"] ** r["N"], r["M"]
        assert r["floor"] == pytest.approx(M * (K - 1) / 2, rel=1e-9)   # the horizon saturates the floor
        if r["arm"] in ("pg_uniform", "pg_on_policy", "best_of_m", "control"):
            assert r["mistakes"] >= r["floor"]
    ctl = [r for r in rows if r["arm"] == "control"]
    assert all(r["mistakes"] == pytest.approx(r["rounds"] * (1 - r["k"] ** -r["N"]), rel=0.05) for r in ctl)
