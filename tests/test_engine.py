"""The streaming engine: output contract, every algorithm from its example config, decimation, chunk-size
independence, resume equivalence, killed-run recovery and config errors."""
import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import onlinepg as op
from onlinepg import build
from onlinepg import config as C
from onlinepg.engine import TIMING_KEYS, run
from onlinepg.trace import file_metadata, read_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "data" / "configs"
ROUND_COLUMNS = {"round", "context_id", "reward", "correct", "orm_queries", "prm_queries", "mistakes_sampled",
                 "mistakes_expected", "loglik_star", "sampled_logprob", "lr", "grad_norm"}
EVAL_COLUMNS = {"round", "test_error", "test_error_avg", "mean_loglik_star"}
SUMMARY_KEYS = {"rounds", "updates", "orm_queries", "prm_queries", "mistakes_sampled", "mistakes_expected",
                "final_test_error", "wall_seconds", "compile_seconds", "rounds_per_second"}

SMALL = {  # shrink each example config to a test-sized run
    "sgd": ["run.rounds=600", "run.eval_every=200"],
    "pg": ["run.rounds=600", "run.eval_every=200"],
    "best_of_m": ["run.rounds=600", "run.eval_every=200"],
    "pg_process": ["run.rounds=600", "run.eval_every=200"],
    "pg_batch": ["task.N=8", "task.d=8", "task.k=8", "task.centres=8", "base.steps=20", "algo.batch=64",
                 "run.rounds=30", "run.eval_every=10"],
    "perceptron": ["run.rounds=3000", "run.eval_every=1000"],
    "banditron": ["run.rounds=3000", "run.eval_every=1000"],
    "default": ["base.steps=10", "algo.batch=32", "run.rounds=30", "run.eval_every=10"],
    "grpo": ["task.N=8", "task.d=8", "task.k=8", "task.centres=8", "base.steps=20", "algo.batch=64",
             "run.rounds=30", "run.eval_every=10"],
}


def tables(out):
    return {name: read_table(out / name) for name in ("rounds", "eval", "tracked")}


def same_run(a, b):
    for name in ("rounds", "eval", "tracked"):
        ta, tb = read_table(a / name), read_table(b / name)
        assert (ta is None) == (tb is None), name
        if ta is not None:
            assert ta.equals(tb), name
    sa = {k: v for k, v in json.loads((a / "summary.json").read_text()).items() if k not in TIMING_KEYS}
    sb = {k: v for k, v in json.loads((b / "summary.json").read_text()).items() if k not in TIMING_KEYS}
    sa.pop("resumed_from"), sb.pop("resumed_from")
    assert sa == sb
    wa = np.load(sorted((a / "checkpoints").glob("*.npz"))[-1])["w"]
    wb = np.load(sorted((b / "checkpoints").glob("*.npz"))[-1])["w"]
    assert np.array_equal(wa, wb)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_example_config_runs(name, tmp_path):
    out = tmp_path / name
    summary = run(CONFIGS / f"{name}.toml", out, sets=SMALL[name], progress=False)
    assert SUMMARY_KEYS <= set(summary)
    assert json.loads((out / "summary.json").read_text())["rounds"] == summary["rounds"]
    t = tables(out)
    assert ROUND_COLUMNS <= set(t["rounds"].column_names)
    assert EVAL_COLUMNS <= set(t["eval"].column_names)
    rounds = t["rounds"].column("round").to_numpy()
    every = C.resolve(C.load(out / "config.toml")).run.trace_every
    assert np.array_equal(rounds, np.arange(0, summary["rounds"], every))
    for col in t["rounds"].column_names:
        values = t["rounds"].column(col).to_numpy()
        assert np.all(np.isfinite(values)), col
    assert C.resolve(C.load(out / "config.toml")).algo.name == C.load(CONFIGS / f"{name}.toml")["algo"]["name"]
    meta = file_metadata(sorted((out / "rounds").glob("*.parquet"))[0])
    assert meta["onlinepg.version"] == op.__version__ and "[algo]" in meta["onlinepg.config"]
    assert int(meta["onlinepg.seed"]) == summary["seed"]
    # counters are cumulative and consistent with the summary
    ev = t["eval"].to_pylist()
    for key in ("rounds", "updates", "orm_queries", "prm_queries", "tokens_sampled", "mistakes_sampled"):
        assert ev[-1][key] == summary[key], key
    assert np.all(np.diff(t["rounds"].column("mistakes_sampled").to_numpy()) >= 0)
    assert ev[0]["round"] == 0 and ev[-1]["round"] == summary["rounds"]
    assert ev[-1]["test_error"] == pytest.approx(summary["final_test_error"])
    assert ev[-1]["test_error_avg"] == pytest.approx(np.mean([e["test_error"] for e in ev]))
    # the last checkpoint holds the final weights: on the run's held-out set they give the final test error
    pol = op.load_policy(sorted((out / "checkpoints").glob("*.npz"))[-1])
    cfg = C.resolve(C.load(out / "config.toml"))
    held = build.test_batch(build.build_task(cfg), cfg)
    ll, _, _ = pol.loglik(held.X, held.J, held.Ystar)
    assert 1.0 - np.exp(ll).mean() == pytest.approx(summary["final_test_error"], rel=1e-12, abs=1e-15)


def test_learning_happens(tmp_path):
    """Supervised SGD on a small teacher drives the exact test error well below the uniform policy's."""
    s = run({"task": {"d": 8, "k": 4, "N": 3, "contexts": "rademacher"}, "algo": {"name": "sgd"},
             "run": {"rounds": 5000, "eval_every": 1000, "progress": False}}, tmp_path / "r")
    assert s["final_test_error"] < 0.5 * (1 - 4.0 ** -3)


def test_tracked_centres(tmp_path):
    run(CONFIGS / "default.toml", tmp_path / "r", sets=SMALL["default"], progress=False)
    tr = read_table(tmp_path / "r" / "tracked")
    n_evals = read_table(tmp_path / "r" / "eval").num_rows
    assert tr.num_rows == 16 * n_evals                    # 16 mixture centres, every evaluation
    assert set(tr.column("context_id").to_pylist()) == set(range(16))


@pytest.mark.parametrize("every", [1, 7, 100])
def test_decimation(every, tmp_path):
    base = ["run.rounds=450", "run.eval_every=150", f"run.trace_every={every}"]
    run(CONFIGS / "pg.toml", tmp_path / "d", sets=base, progress=False)
    full_sets = ["run.rounds=450", "run.eval_every=150", "run.trace_every=1"]
    run(CONFIGS / "pg.toml", tmp_path / "f", sets=full_sets, progress=False)
    dec = read_table(tmp_path / "d" / "rounds")
    full = read_table(tmp_path / "f" / "rounds")
    rows = np.arange(0, 450, every)
    assert np.array_equal(dec.column("round").to_numpy(), rows)
    assert dec.equals(full.take(rows))


@pytest.mark.parametrize("name", ["pg", "pg_process", "pg_batch", "grpo"])
def test_chunk_size_does_not_change_the_trace(name, tmp_path):
    sets = SMALL[name]
    run(CONFIGS / f"{name}.toml", tmp_path / "a", sets=sets + ["run.chunk=1000000"], progress=False)
    run(CONFIGS / f"{name}.toml", tmp_path / "b", sets=sets + ["run.chunk=7"], progress=False)
    same_run(tmp_path / "a", tmp_path / "b")


def test_resume_equals_uninterrupted(tmp_path):
    sets = ["run.rounds=900", "run.eval_every=100", "run.checkpoint_every=300"]
    run(CONFIGS / "best_of_m.toml", tmp_path / "full", sets=sets, progress=False)
    # stop after 600 rounds: same config but fewer rounds would change the config, so cut the folder back
    run(CONFIGS / "best_of_m.toml", tmp_path / "cut", sets=sets, progress=False)
    cut = tmp_path / "cut"
    for p in (cut / "checkpoints").glob("ckpt-*.npz"):
        if int(p.stem.split("-")[1]) > 600:
            p.unlink()
    (cut / "summary.json").unlink()
    s = run(None, cut, resume=True, progress=False)
    assert s["resumed_from"] == 600
    same_run(tmp_path / "full", cut)


def test_killed_run_recovers(tmp_path):
    """SIGKILL mid-run leaves every flushed part readable; --resume finishes it bit for bit."""
    out = tmp_path / "killed"
    sets = ["run.rounds=400000", "run.eval_every=2000", "run.checkpoint_every=20000", "run.trace_every=1"]
    args = [sys.executable, "-m", "onlinepg.cli", "run", str(CONFIGS / "pg.toml"), "--out", str(out),
            "--no-progress"] + [a for s in sets for a in ("--set", s)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "checkpoints").glob("*.npz"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    parts = sorted((out / "rounds").glob("*.parquet"))
    assert parts, "no part was flushed before the kill"
    for p in parts:
        pq.read_table(p)                                  # every flushed part is complete and readable
    assert not (out / "summary.json").exists()
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "run", "--out", str(out), "--resume",
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    run(CONFIGS / "pg.toml", tmp_path / "ref", sets=sets, progress=False)
    same_run(tmp_path / "ref", out)


def test_refuses_non_empty_folder(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(op.ConfigError, match="not empty"):
        run(CONFIGS / "pg.toml", out, sets=SMALL["pg"], progress=False)
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("sets,message", [
    (["algo.name=ppo"], "algo.name must be one of"),
    (["algo.lr=-1"], "algo.lr must be a number in (0, inf)"),
    (["task.k=1"], "task.k must be an integer in [2, inf)"),
    (["task.N=0"], "task.N must be an integer in [1, inf)"),
    (["task.gamma=1.5"], "task.gamma must be a number in (0, 1)"),
    (["base.kind=alpha", "base.alpha=0"], "base.alpha must be a number in (0, 1)"),
    (["algo.m=0"], "algo.m must be an integer in [1, inf)"),
    (["algo.behaviour=greedy"], "algo.behaviour must be one of"),
    (["algo.iw_clip=0.5"], "algo.iw_clip must be 0 (off) or a number >= 1"),
    (["run.rounds=ten"], "run.rounds must be an integer"),
    (["run.roundz=10"], "unknown key run.roundz"),
    (["algo.name=perceptron"], "needs task.N = 1"),
    (["task.kind=teacher", "base.kind=alpha"], "base.kind 'alpha' needs task.kind = 'cells'"),
    (["base.kind=load", "base.path=/nonexistent.npz"], "weights file not found"),
])
def test_config_errors_name_the_key_and_write_nothing(sets, message, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(op.ConfigError) as err:
        run(CONFIGS / "pg.toml", out, sets=sets, progress=False)
    assert message in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_cli_reports_config_errors(tmp_path):
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "run", str(CONFIGS / "pg.toml"), "--out",
                          str(tmp_path / "x"), "--set", "algo.lr=-1"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "algo.lr must be" in res.stderr and "Traceback" not in res.stderr


def test_default_config_file_matches_builtin():
    assert C.resolve(C.load(CONFIGS / "default.toml")) == C.resolve(C.DEFAULT_EXPERIMENT)


def test_base_from_previous_run(tmp_path):
    run(CONFIGS / "sgd.toml", tmp_path / "a", sets=["run.rounds=500", "run.eval_every=250"], progress=False)
    ckpt = sorted((tmp_path / "a" / "checkpoints").glob("*.npz"))[-1]
    s = run(CONFIGS / "sgd.toml", tmp_path / "b", sets=["run.rounds=10", "run.eval_every=10", "base.kind=load",
                                                       f'base.path="{ckpt}"'], progress=False)
    first = read_table(tmp_path / "b" / "eval").to_pylist()[0]["test_error"]
    last = read_table(tmp_path / "a" / "eval").to_pylist()[-1]["test_error"]
    assert first == pytest.approx(last)
    assert s["rounds"] == 10


@pytest.mark.parametrize("kind", ["cycle", "shuffle"])
def test_finite_pool_streams(kind, tmp_path):
    """cycle visits the pool in order; shuffle visits every pool context exactly once per epoch."""
    sets = ["task.M=5", f"task.stream={kind}", "run.rounds=40", "run.eval_every=20", "run.trace_every=1"]
    run(CONFIGS / "pg.toml", tmp_path / "p", sets=sets, progress=False)
    ids = read_table(tmp_path / "p" / "rounds").column("context_id").to_numpy()
    epochs = ids.reshape(8, 5)
    if kind == "cycle":
        assert np.array_equal(epochs, np.tile(np.arange(5), (8, 1)))
    else:
        assert all(sorted(e) == list(range(5)) for e in epochs)
        assert len({tuple(e) for e in epochs}) > 1


def test_teacher_pool_stream(tmp_path):
    sets = ["task.stream=cycle", "task.pool=3", "run.rounds=9", "run.eval_every=9", "run.trace_every=1"]
    run(CONFIGS / "sgd.toml", tmp_path / "t", sets=sets, progress=False)
    ids = read_table(tmp_path / "t" / "rounds").column("context_id").to_numpy()
    assert np.array_equal(ids, np.tile(np.arange(3), 3))


def test_target_error_stops_the_run_and_resume_keeps_it_stopped(tmp_path):
    sets = ["run.rounds=100000", "run.eval_every=50", "run.target_error=0.2"]
    s = run(CONFIGS / "best_of_m.toml", tmp_path / "t", sets=sets, progress=False)
    assert s["reached_target"] and s["rounds"] < 100000 and s["rounds"] % 50 == 0
    ev = read_table(tmp_path / "t" / "eval").to_pylist()
    assert ev[-1]["test_error"] <= 0.2 < ev[-2]["test_error"]
    (tmp_path / "t" / "summary.json").unlink()
    s2 = run(None, tmp_path / "t", resume=True, progress=False)
    assert s2["rounds"] == s["rounds"] and s2["reached_target"]


def test_max_queries_stops_at_the_first_evaluation_past_it_whatever_the_chunk(tmp_path):
    sets = ["run.rounds=100000", "run.eval_every=40", "run.max_queries=3000"]
    s = run(CONFIGS / "best_of_m.toml", tmp_path / "a", sets=sets + ["run.chunk=7"], progress=False)
    ev = read_table(tmp_path / "a" / "eval").to_pylist()
    assert s["stopped_early"] and not s["reached_target"] and s["rounds"] % 40 == 0
    assert ev[-1]["orm_queries"] >= 3000 > ev[-2]["orm_queries"]
    s2 = run(CONFIGS / "best_of_m.toml", tmp_path / "b", sets=sets, progress=False)
    assert s2["rounds"] == s["rounds"] and s2["orm_queries"] == s["orm_queries"]
    assert read_table(tmp_path / "b" / "rounds").equals(read_table(tmp_path / "a" / "rounds"))


def test_eval_and_tracking_schedules_are_decoupled_and_chunk_free(tmp_path):
    """Tracked contexts every step, the test error every 50 steps plus log-spaced rounds: the paper's fig1
    schedule. The same rows whatever the chunk size."""
    sets = ["run.rounds=400", "run.eval_every=50", "run.track_every=1", "run.eval_log_points=6",
            "run.tracked=test", "run.tracked_count=3", "run.checkpoint_every=130"]
    run(CONFIGS / "pg.toml", tmp_path / "a", sets=sets + ["run.chunk=7"], progress=False)
    ev = read_table(tmp_path / "a" / "eval").column("round").to_pylist()
    logs = sorted({int(400 ** (i / 6)) for i in range(1, 7)})
    assert ev == sorted({0, *range(50, 401, 50), *logs})
    tr = read_table(tmp_path / "a" / "tracked").to_pydict()
    assert sorted(set(tr["round"])) == list(range(401)) and len(tr["round"]) == 3 * 401
    run(CONFIGS / "pg.toml", tmp_path / "b", sets=sets, progress=False)
    for table in ("eval", "tracked", "rounds"):
        assert read_table(tmp_path / "a" / table).equals(read_table(tmp_path / "b" / table))


def test_algo_init_zero_starts_the_learner_at_zero_and_explores_from_the_base(tmp_path):
    """algo.init = 'zero': the learner starts at w = 0 (the uniform policy, test error 1 − k^−N at round 0) while
    best-of-m still explores from the base q₀ (base.npz is the same base either way); 'base' (the default) starts
    the learner at the base (test error 1 − α)."""
    from onlinepg.weights import load_policy
    user = {"task": {"kind": "cells", "k": 4, "N": 3, "M": 6}, "base": {"kind": "alpha", "alpha": 0.2},
            "algo": {"name": "best_of_m", "m": 8},
            "run": {"rounds": 60, "eval_every": 20, "checkpoint_every": 20, "keep_checkpoints": 0, "progress": False}}
    runs = {}
    for init in ("base", "zero"):
        out = tmp_path / init
        run(user, out, sets=[f"algo.init={init}"])
        runs[init] = (read_table(out / "eval").to_pydict(), out)
    (ev_b, out_b), (ev_z, out_z) = runs["base"], runs["zero"]
    assert ev_b["test_error"][0] == pytest.approx(1 - 0.2, abs=1e-12)
    assert ev_z["test_error"][0] == pytest.approx(1 - 4.0 ** -3, abs=1e-12)
    assert np.array_equal(load_policy(out_b / "base.npz").w, load_policy(out_z / "base.npz").w)
    assert ev_z["test_error"][-1] < ev_z["test_error"][0] - 0.05         # it learns from the base's explorations
    assert ev_z["orm_queries"][-1] > 0
    assert C.resolve(C.load(out_z / "config.toml")).algo.init == "zero"


def test_the_grpo_family_learns_and_its_kl_holds_it_back(tmp_path):
    """End to end from the shipped example (docs/theory.md §4.9): every advantage estimator lowers the exact test
    error well below the base's within 60 steps (measured 0.808 → 0.45–0.60), and a strong KL penalty to the base
    (β = 20) keeps the policy near it (a sign error in the penalty would push it away and learn faster)."""
    sets = ["base.steps=40", "algo.batch=64", "run.rounds=60", "run.eval_every=20"]
    final = {}
    for est in ("grpo", "rloo", "raft", "pass_k", "grpo-kl"):
        extra = ["algo.beta=20.0"] if est == "grpo-kl" else [f"algo.adv_estimator={est}"]
        run(CONFIGS / "grpo.toml", tmp_path / est, sets=sets + extra, progress=False)
        err = read_table(tmp_path / est / "eval").column("test_error").to_numpy()
        final[est] = err[-1]
        base = err[0]
    for est in ("grpo", "rloo", "raft", "pass_k"):
        assert final[est] < 0.8 * base, (est, final[est], base)
    assert final["grpo-kl"] > final["grpo"] + 0.1, final
