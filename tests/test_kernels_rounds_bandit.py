"""The fused N = 1 bandit round (kernels.rounds.pg_bandit_round) against the generic PG round (pg_round)."""
import numpy as np
import pytest

import onlinepg.kernels as K
from onlinepg import config as C
from onlinepg.build import ContextStream, build_task
from onlinepg.learners import RoundLearner
from onlinepg.policy import Policy

O = K.codes


@pytest.mark.parametrize("reward,rule", [("01", "adaptive"), ("pm1", "adaptive"), ("01", "constant")])
def test_fused_bandit_round_matches_generic_path(reward, rule):
    cfg = C.resolve({"task": {"kind": "teacher", "d": 7, "k": 5, "N": 1, "contexts": "rademacher", "seed": 3},
                     "algo": {"name": "pg", "reward": reward, "lr_rule": rule, "lr": 0.3}, "run": {"seed": 4}})
    task = build_task(cfg)
    stream = ContextStream(task, cfg)
    out = {}
    # ζ = 1e300 clips nothing and the on-policy weight p/q is exactly 1: the same update, generic code path
    for zeta in (0.0, 1e300):
        pol = Policy(task.features)
        lr = RoundLearner(cfg, stream, pol, Policy(task.features))
        lr.params = lr.params._replace(iw_clip=zeta)
        assert lr.kind == ("pg/bandit" if zeta == 0.0 else "pg")
        rows = np.vstack([lr.advance(0, 700), lr.advance(700, 1300)])
        out[zeta] = (pol.w.copy(), lr.counters.copy(), rows)
    (wf, cf, rf), (wg, cg, rg) = out[0.0], out[1e300]
    np.testing.assert_allclose(wf, wg, rtol=1e-10, atol=1e-12)
    assert np.array_equal(cf[:6], cg[:6])                       # rounds … mistakes_sampled exactly
    assert cf[6] == pytest.approx(cg[6], rel=1e-10)
    np.testing.assert_allclose(rf, rg, rtol=1e-9, atol=1e-12)
    assert cf[O.C_UPDATES] > 50 and cf[O.C_MIST_SAMPLED] < 2000
