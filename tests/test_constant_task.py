"""The constant-sequence family (tasks.ConstantTask, task.kind = 'constant') and the context-only bigram map."""
import math

import numpy as np
import pytest

import onlinepg as op
from onlinepg import config as C
from onlinepg import lq
from onlinepg.build import build_task, test_batch as held_out


def test_exact_margin_distribution_and_uniform_floor():
    task = op.ConstantTask(k=4, N=6, M=21, tail=0.2, seed=3)
    allc = task.all_contexts()
    # the margin: w* has norm 1 and every wrong token trails by exactly γ = √(k/((k−1)M))
    assert np.linalg.norm(task.star_weights()) == pytest.approx(1.0)
    assert task.gamma == pytest.approx(math.sqrt(4 / (3 * 21)))
    assert op.empirical_margin(task.features, task.star_weights(), allc) == pytest.approx(task.gamma, rel=1e-12)
    # constant responses over two tokens; the head has mass 1 − tail, each tail context tail/(M−1)
    assert set(np.unique(task.ystar)) <= {0, 1} and (task.ystar == task.ystar[:, :1]).all()
    assert task.masses[0] == pytest.approx(0.8) and task.masses[1:] == pytest.approx(np.full(20, 0.01))
    assert np.bincount(allc.J, minlength=task.M) / len(allc.J) == pytest.approx(task.masses)
    # the uniform policy puts k^−N on every correct response; Q_q(ε) of it is k^−N
    lik = lq.evaluate_likelihoods(op.Policy(task.features), allc)
    assert lik.loglik == pytest.approx(np.full(len(allc.J), -6 * math.log(4)))
    # contexts are keyed by index: any chunking gives the same stream; X is one-hot of J; y* reads back from X
    whole, part = task.draw(0, 500), task.draw(200, 300)
    np.testing.assert_array_equal(part.J, whole.J[200:])
    np.testing.assert_array_equal(whole.X, np.eye(task.M)[whole.J])
    np.testing.assert_array_equal(task.responses(whole.X), whole.Ystar)
    assert abs((whole.J == 0).mean() - 0.8) < 0.06


def test_context_only_features_leave_the_transition_block_at_zero(tmp_path):
    task = op.ConstantTask(k=3, N=4, M=5, tail=0.5)
    b = task.draw(0, 40)
    pol = op.Policy(task.features, np.random.default_rng(0).standard_normal(task.features.D))
    g = pol.grad(b.X, b.J, b.Ystar, np.ones(40))
    assert np.all(g[task.M * 3:] == 0.0) and np.any(g[:task.M * 3] != 0.0)
    # the same token distribution at every position: the log-likelihood of a constant y is N × one token's
    ll, _, tok = pol.loglik(b.X, b.J, b.Ystar)
    np.testing.assert_allclose(tok, np.repeat(tok[:, :1], 4, axis=1))
    op.save_policy(pol, tmp_path / "w.npz")
    back = op.load_policy(tmp_path / "w.npz")
    assert back.features == task.features and not back.features.transition
    with pytest.raises(op.ConfigError, match="features.transition"):
        op.FeatureSpec("cells", 3, 2, M=4, transition=False)


def test_config_kind_constant():
    cfg = C.resolve({"task": {"kind": "constant", "k": 3, "N": 5, "M": 11, "tail": 0.2, "seed": 2}})
    task = build_task(cfg)
    assert isinstance(task, op.ConstantTask) and task.M == 11 and task.tail == pytest.approx(0.2) and task.slots == 50
    assert len(held_out(task, cfg).J) == task.slots            # every slot once: the exact expectation
    assert build_task(C.resolve({"task": {"kind": "constant", "k": 4, "N": 2, "gamma": 0.2}})).M == 33
    with pytest.raises(op.ConfigError, match="task.tail"):
        C.resolve({"task": {"kind": "constant", "tail": 1.0}})
    with pytest.raises(op.ConfigError, match="task.M"):
        C.resolve({"task": {"kind": "constant", "M": 1}})
    with pytest.raises(op.ConfigError, match="task.kind"):
        C.resolve({"task": {"kind": "constants"}})
    with pytest.raises(op.ConfigError, match="base.kind 'alpha' needs task.kind = 'cells'"):
        C.resolve({"task": {"kind": "constant"}, "base": {"kind": "alpha"}})


def test_structured_strategy_is_exact():
    from onlinepg.experiments.pretraining import structured_queries_to
    task = op.ConstantTask(k=2, N=8, M=6, tail=0.5, seed=1)
    floor = np.full(task.slots, -8 * math.log(2))
    q, t = structured_queries_to(task, floor, 0, 2000, 0.0)
    assert q == int((1 + task.bits).sum()) and t >= task.M          # all memorised: 1 + B_j queries each
    J = task.draw(0, t).J
    assert len(np.unique(J)) == task.M and len(np.unique(J[:t - 1])) == task.M - 1
