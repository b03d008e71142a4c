"""Resume after a kill, for every algorithm and every learning-rate rule, bit for bit.

A run is "killed" in process at a round that is not a checkpoint multiple: the learner raises as soon as it
is asked to play that round, so the folder is left exactly as a SIGKILL would leave it at that moment — the
checkpoints and Parquet parts flushed so far (pruned to ``keep_checkpoints``), nothing of the rounds since the
last checkpoint, no summary.json. ``run(resume=True)`` with the unchanged config must then finish the run and
produce the same folder as the uninterrupted run: every trace table, every kept checkpoint (weights, Adagrad
state, counters, evaluator state), the base and the summary. (``test_engine.test_killed_run_recovers`` does
the same with a real SIGKILL of a subprocess, for one algorithm.)
"""
import json

import numpy as np
import pytest

from onlinepg import learners as L
from onlinepg.engine import TIMING_KEYS, run
from onlinepg.trace import read_table

RULES = {"adaptive": {"lr_rule": "adaptive"}, "constant": {"lr_rule": "constant", "lr": 0.2},
         "adagrad": {"lr_rule": "adagrad", "lr": 0.3}}

TEACHER = {"kind": "teacher", "d": 4, "k": 3, "N": 2, "contexts": "mixture", "centres": 4, "test_contexts": 64}
TEACHER_N1 = {"kind": "teacher", "d": 16, "k": 8, "N": 1, "contexts": "rademacher", "test_contexts": 64}
PRETRAINED = {"kind": "pretrain", "steps": 5, "batch": 16, "lr": 0.3}
CELLS = {"kind": "cells", "k": 3, "N": 3, "M": 6}
CELLS_BASE = {"kind": "alpha", "alpha": 0.1}

# per-round algorithms: 250 rounds, evaluations every 20, checkpoints every 60 (kept: the newest 2), killed at
# round 150 (last checkpoint 120); batched ones: 50 steps, evaluations every 5, checkpoints every 15, killed at
# step 37 (last checkpoint 30).
PER_ROUND = {"rounds": 250, "eval_every": 20, "checkpoint_every": 60, "keep_checkpoints": 2}
BATCHED = {"rounds": 50, "eval_every": 5, "checkpoint_every": 15, "keep_checkpoints": 2}

ALGOS = {
    "sgd": (TEACHER, PRETRAINED, {"name": "sgd"}, PER_ROUND, 150),
    "sgd-batched": (TEACHER, PRETRAINED, {"name": "sgd", "batch": 8}, BATCHED, 37),
    **{f"pg-{b}": (TEACHER, PRETRAINED, {"name": "pg", "behaviour": b, "reward": "pm1", "eps": 0.3},
                   PER_ROUND, 150)
       for b in ("policy", "uniform", "base", "mixture", "eps_mixture")},
    "pg-group-loo-iw": (CELLS, CELLS_BASE, {"name": "pg", "behaviour": "mixture", "reward": "pm1", "baseline": "loo",
                                            "group_size": 3, "iw_clip": 2.0}, PER_ROUND, 150),
    # N = 1 on-policy PG takes the fused bandit round (adaptive, constant); its own kernel path
    "pg-bandit-N1": (TEACHER_N1, {"kind": "zero"}, {"name": "pg", "reward": "pm1"}, PER_ROUND, 150),
    "best_of_m": (CELLS, CELLS_BASE, {"name": "best_of_m", "m": 4}, PER_ROUND, 150),
    # a finite pool reshuffled every epoch (7 contexts: both the kill and the checkpoint fall inside an epoch)
    "best_of_m-shuffled-pool": (dict(TEACHER, stream="shuffle", pool=7), PRETRAINED, {"name": "best_of_m", "m": 4},
                                PER_ROUND, 150),
    **{f"pg_process-{v}": (CELLS, CELLS_BASE, {"name": "pg_process", "variant": v, "m_tok": 2, "reward": "pm1"},
                           PER_ROUND, 150)
       for v in ("explore", "binary_search", "on_policy")},
    "pg_batch-outcome": (CELLS, CELLS_BASE, {"name": "pg_batch", "reward_type": "outcome", "reward": "pm1",
                                             "baseline": "batch_mean", "batch": 8}, BATCHED, 37),
    "pg_batch-process": (CELLS, CELLS_BASE, {"name": "pg_batch", "reward_type": "process", "reward": "01",
                                             "baseline": "group_mean", "group_size": 2, "batch": 8}, BATCHED, 37),
    # the GRPO family: two updates per batch of samples (the old log-probabilities live within a step), the KL to
    # the base, the entropy bonus; pass_k on the teacher
    "grpo-kl-iterations": (CELLS, CELLS_BASE, {"name": "grpo", "num_generations": 4, "batch": 8, "beta": 0.05,
                                               "num_iterations": 2, "epsilon_high": 0.28, "entropy_coeff": 0.01},
                           BATCHED, 37),
    "grpo-pass_k": (TEACHER, PRETRAINED, {"name": "grpo", "num_generations": 4, "batch": 8,
                                          "adv_estimator": "pass_k", "pkpo_k": 2}, BATCHED, 37),
}
ONE_RULE = {"grpo-pass_k"}     # its estimator changes nothing the update rules see: the adaptive rule only
CASES = [pytest.param(name, rule, id=f"{name}-{rule}") for name in ALGOS for rule in RULES
         if name not in ONE_RULE or rule == "adaptive"]
# the perceptron's update is w += φ(y*) − φ(ŷ) whatever algo.lr_rule says: one case
CASES.append(pytest.param("perceptron", "adaptive", id="perceptron"))
ALGOS["perceptron"] = (TEACHER_N1, {"kind": "zero"}, {"name": "perceptron"}, PER_ROUND, 150)
CASES.append(pytest.param("banditron", "adaptive", id="banditron"))       # step 1 too, and its own RNG use
ALGOS["banditron"] = (TEACHER_N1, {"kind": "zero"}, {"name": "banditron", "eps": 0.2}, PER_ROUND, 150)


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the engine may catch and tidy up after it."""


@pytest.fixture
def kill_at(monkeypatch):
    """``kill_at(r)``: from now on, a learner asked to play round r (in any chunk) dies before playing it;
    ``kill_at(None)`` disarms it."""
    at = [None, Killed]
    for cls in (L.RoundLearner, L.BatchLearner):
        def advance(self, first, n, _original=cls.advance):
            if at[0] is not None and first + n > at[0]:
                raise at[1](f"killed at round {at[0]}")
            return _original(self, first, n)

        monkeypatch.setattr(cls, "advance", advance)

    def arm(round_, how=Killed):
        at[:] = [round_, how]
    return arm


def config(name, rule):
    task, base, algo, run_, _ = ALGOS[name]
    return {"task": dict(task), "base": dict(base), "algo": {**algo, **RULES[rule]},
            "run": {**run_, "seed": 3, "progress": False}}


def checkpoint_rounds(out):
    return sorted(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("ckpt-*.npz"))


def assert_same_folder(a, b, ignore=()):
    """Everything but timings, ``resumed_from`` and the summary keys ``ignore`` identical, bit for bit."""
    for table in ("rounds", "eval", "tracked"):
        ta, tb = read_table(a / table), read_table(b / table)
        assert ta is not None and tb is not None, table
        assert ta.equals(tb), f"{table}/ differs"
    assert checkpoint_rounds(a) == checkpoint_rounds(b), "kept checkpoints differ"
    for ckpt in sorted((a / "checkpoints").glob("ckpt-*.npz")) + [a / "base.npz"]:
        with np.load(ckpt) as za, np.load(b / ckpt.relative_to(a)) as zb:
            assert sorted(za.files) == sorted(zb.files), ckpt.name
            for key in za.files:
                assert np.array_equal(za[key], zb[key]), f"{ckpt.name}: {key} differs"
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    for s in (sa, sb):
        for key in (*TIMING_KEYS, "resumed_from", *ignore):
            s.pop(key, None)
    assert sa == sb


@pytest.mark.parametrize("name,rule", CASES)
def test_killed_run_resumes_bit_for_bit(name, rule, tmp_path, kill_at):
    cfg = config(name, rule)
    killed_round = ALGOS[name][4]
    every = cfg["run"]["checkpoint_every"]
    assert killed_round % every and killed_round % cfg["run"]["eval_every"]
    last_ckpt = killed_round // every * every

    full = run(cfg, tmp_path / "full")
    assert full["rounds"] == cfg["run"]["rounds"]

    kill_at(killed_round)
    with pytest.raises(Killed):
        run(cfg, tmp_path / "killed")
    killed = tmp_path / "killed"
    # the folder a kill leaves: flushed checkpoints (pruned to the newest 2), nothing after the last one
    assert not (killed / "summary.json").exists()
    assert checkpoint_rounds(killed) == [last_ckpt - every, last_ckpt]
    assert read_table(killed / "rounds").column("round").to_numpy().max() == last_ckpt - 1
    assert read_table(killed / "eval").column("round").to_numpy().max() == last_ckpt

    kill_at(None)                                    # disarmed: the resumed run plays to the end
    summary = run(None, killed, resume=True, progress=False)
    assert summary["resumed_from"] == last_ckpt
    assert_same_folder(tmp_path / "full", killed)

    # not vacuous: the resumed stretch learned, and Adagrad's accumulator carried real state across the kill
    with np.load(tmp_path / "full" / "checkpoints" / f"ckpt-{cfg['run']['rounds']:012d}.npz") as end:
        assert end["counters"][1] > 0, "no updates at all"
        if rule == "adagrad" and name not in ("perceptron", "banditron"):
            assert np.any(end["G2"] > 0)
    rows = read_table(killed / "rounds")
    updates = rows.column("updates").to_numpy()
    assert updates[-1] > updates[last_ckpt - 1], "nothing was learned after the resume point"


def test_killed_before_the_first_checkpoint_restarts_from_scratch(tmp_path, kill_at):
    cfg = config("pg_batch-outcome", "adagrad")
    run(cfg, tmp_path / "full")
    kill_at(7)                                       # first checkpoint would be at step 15
    with pytest.raises(Killed):
        run(cfg, tmp_path / "killed")
    assert checkpoint_rounds(tmp_path / "killed") == []
    kill_at(None)
    summary = run(None, tmp_path / "killed", resume=True, progress=False)
    assert summary["resumed_from"] == 0
    assert_same_folder(tmp_path / "full", tmp_path / "killed")


def test_resume_of_a_resumed_run(tmp_path, kill_at):
    """Killed twice (each time between checkpoints), resumed twice: still the uninterrupted run."""
    cfg = config("pg-mixture", "adagrad")
    run(cfg, tmp_path / "full")
    kill_at(100)
    with pytest.raises(Killed):
        run(cfg, tmp_path / "killed")
    kill_at(200)
    with pytest.raises(Killed):
        run(None, tmp_path / "killed", resume=True, progress=False)
    assert checkpoint_rounds(tmp_path / "killed") == [120, 180]
    kill_at(None)
    assert run(None, tmp_path / "killed", resume=True, progress=False)["resumed_from"] == 180
    assert_same_folder(tmp_path / "full", tmp_path / "killed")


@pytest.mark.parametrize("keep", [0, 1, 3])
def test_keep_checkpoints_prunes_to_the_newest(keep, tmp_path):
    cfg = config("sgd", "adaptive")
    cfg["run"].update(rounds=250, checkpoint_every=40, eval_every=20, keep_checkpoints=keep)
    run(cfg, tmp_path / "r")
    written = [40, 80, 120, 160, 200, 240, 250]          # every 40 rounds, and the last round
    assert checkpoint_rounds(tmp_path / "r") == (written if keep == 0 else written[-keep:])
    for r in checkpoint_rounds(tmp_path / "r"):          # each kept file is the state of its own round
        with np.load(tmp_path / "r" / "checkpoints" / f"ckpt-{r:012d}.npz") as z:
            assert int(z["round"]) == r and z["counters"][0] == r


def test_ctrl_c_leaves_a_resumable_run(tmp_path, kill_at):
    """Ctrl-C (KeyboardInterrupt) mid-run: the error says how to resume, and resuming gives the same run."""
    cfg = config("pg_process-binary_search", "adagrad")
    run(cfg, tmp_path / "full")
    kill_at(170, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt) as err:
        run(cfg, tmp_path / "stopped")
    assert "--resume" in str(err.value)
    kill_at(None)
    assert run(None, tmp_path / "stopped", resume=True, progress=False)["resumed_from"] == 120
    assert_same_folder(tmp_path / "full", tmp_path / "stopped")
