"""pg_batch with baseline = 'loo' and group_size = 1 (one sample per context) means leave-one-out over the
whole batch: sample b's baseline is the mean reward of the other B − 1 samples. (Within groups of one sample
there is no other sample to leave in, which would make every advantage 0 and the run learn nothing.)
The step-by-step comparison with the NumPy reference is in test_kernels_rounds.py (``*-loo-batch-*`` cases);
here the advantages themselves, by hand, and the documented meaning."""
import numpy as np
import pytest

from onlinepg import config as C
from onlinepg.build import ContextStream, build_base, build_task
from onlinepg.learners import BatchLearner, make_learner
from onlinepg.policy import Policy
from reference_online import batch_advantages


def _learner(**algo):
    cfg = C.resolve({"task": {"kind": "cells", "k": 3, "N": 2, "M": 4}, "base": {"kind": "alpha", "alpha": 0.3},
                     "algo": {"name": "pg_batch", **algo}})
    task = build_task(cfg)
    base = build_base(task, cfg)
    return make_learner(cfg, ContextStream(task, cfg), Policy(task.features, base.w), base)


def test_loo_with_one_sample_per_context_leaves_one_out_of_the_batch():
    learner = _learner(baseline="loo", batch=5)
    assert isinstance(learner, BatchLearner)
    r = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    # by hand: b's baseline is the mean of the 4 others (Σr = 3)
    want = np.array([1 - 2 / 4, 0 - 3 / 4, 0 - 3 / 4, 1 - 2 / 4, 1 - 2 / 4])
    np.testing.assert_allclose(learner.advantages(r), want, rtol=0, atol=1e-15)
    np.testing.assert_allclose(batch_advantages(r, "loo", 1, False), want, rtol=0, atol=1e-15)
    # per position for process rewards (B = 5, N = 2)
    rp = np.stack([r, r[::-1]], axis=1)
    np.testing.assert_allclose(learner.advantages(rp), np.stack([want, want[::-1]], axis=1), atol=1e-15)
    # the leave-one-out advantage is the batch-mean advantage scaled by B/(B − 1)
    mean_adv = _learner(baseline="batch_mean", batch=5).advantages(r)
    np.testing.assert_allclose(learner.advantages(r), mean_adv * 5 / 4, atol=1e-15)


def test_loo_groups_stay_groups_when_group_size_is_above_one():
    learner = _learner(baseline="loo", batch=6, group_size=3)
    r = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(learner.advantages(r), [1.0, -0.5, -0.5, 0.0, 0.0, 0.0], atol=1e-15)


def test_loo_over_the_batch_learns(tmp_path):
    from onlinepg.engine import run
    s = run({"task": {"kind": "cells", "k": 3, "N": 2, "M": 4}, "base": {"kind": "alpha", "alpha": 0.3},
             "algo": {"name": "pg_batch", "baseline": "loo", "batch": 8, "lr_rule": "adagrad", "lr": 0.3},
             "run": {"rounds": 20, "eval_every": 10, "progress": False}}, tmp_path / "r")
    assert s["updates"] > 0 and s["final_test_error"] < 1 - 0.3 - 0.05


def test_documented():
    assert "whole batch" in C.SCHEMA["algo"]["baseline"].doc
    assert "whole batch" in BatchLearner.advantages.__doc__


@pytest.mark.parametrize("std", [False, True])
def test_std_scale_uses_the_whole_batch_too(std):
    learner = _learner(baseline="loo", batch=5, std_scale=std)
    r = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    want = batch_advantages(r, "loo", 1, std)
    np.testing.assert_allclose(learner.advantages(r), want, rtol=1e-13, atol=1e-15)
    if std:
        np.testing.assert_allclose(want, (r - (r.sum() - r) / 4) / (r.std(ddof=1) + 1e-8), rtol=1e-13)
