"""The streaming driver: ``run(config, out)`` plays an algorithm over a context stream chunk by chunk,
evaluates exactly every ``eval_every`` rounds, spills traces to Parquet parts, checkpoints, and resumes.

Output folder (the contract other tools read):
    config.toml    the fully resolved config
    summary.json   counters, final test error, timings
    rounds/        per-round trace (decimated by run.trace_every)
    eval/          exact test error, its running average, mean log-likelihood of y*, counters
    tracked/       exact log-likelihoods of the tracked contexts at every evaluation
    checkpoints/   ckpt-<round>.npz: weights (load_policy reads them), optimiser state, counters
"""
import math
import pathlib
import shutil
import sys
import time

import numpy as np

from . import config as C
from .build import ContextStream, build_base, build_task, test_batch, tracked_batch
from .errors import ConfigError
from .io import policy_arrays, save_npz
from .kernels.codes import COUNTERS, TRACE_COLUMNS, TRACE_SCHEMA
from .learners import is_batched, make_learner
from .policy import Policy
from .trace import PartWriter, run_metadata, write_json

EVAL_SCHEMA = {"round": np.int64, "test_error": np.float64, "test_error_avg": np.float64,
               "mean_loglik_star": np.float64, **{c: (np.float64 if c == "mistakes_expected" else np.int64)
                                                  for c in COUNTERS}}
TRACKED_SCHEMA = {"round": np.int64, "tracked_id": np.int64, "context_id": np.int64, "loglik_star": np.float64,
                  "likelihood": np.float64}
TIMING_KEYS = ("wall_seconds", "compile_seconds", "base_seconds", "rounds_per_second")


def checkpoint_interval(cfg):
    """Rounds between checkpoints/flushes: a multiple of eval_every, about 10^5 sampled tokens apart."""
    r = cfg["run"]
    if r["checkpoint_every"]:
        every = r["checkpoint_every"]
    else:
        per_round = (cfg["algo"]["batch"] if is_batched(cfg) else 1) * cfg["task"]["N"]
        every = r["eval_every"] * max(1, math.ceil(1e5 / (r["eval_every"] * per_round)))
    return r["eval_every"] * math.ceil(every / r["eval_every"])


def _prepare_dir(out, overwrite, resume):
    out = pathlib.Path(out)
    if resume:
        if not (out / "config.toml").exists():
            raise ConfigError(f"--resume: {out} holds no run (config.toml missing)")
        return out
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"output folder {out} is not empty; pass overwrite=True (--overwrite) to replace "
                              "it or --resume to continue it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


class Evaluator:
    """Exact test error err(w) = 1 − mean p_w(y*|x) on the held-out set, its running average over
    evaluations (the random-iterate guarantee), and the tracked contexts' log-likelihoods."""

    def __init__(self, test, tracked):
        self.test, self.tracked = test, tracked
        self.err_sum = 0.0
        self.count = 0

    def __call__(self, policy, round_, counters, eval_w, tracked_w):
        ll, _, _ = policy.loglik(self.test.X, self.test.J, self.test.Ystar)
        err = float(1.0 - np.exp(ll).mean())
        self.err_sum += err
        self.count += 1
        row = {"round": [round_], "test_error": [err], "test_error_avg": [self.err_sum / self.count],
               "mean_loglik_star": [float(ll.mean())]}
        row.update({name: [counters[i]] for i, name in enumerate(COUNTERS)})
        eval_w.append(row)
        if self.tracked is not None:
            tl, _, _ = policy.loglik(self.tracked.X, self.tracked.J, self.tracked.Ystar)
            n = len(tl)
            tracked_w.append({"round": np.full(n, round_), "tracked_id": np.arange(n),
                              "context_id": self.tracked.J, "loglik_star": tl, "likelihood": np.exp(tl)})
        return err


def _progress(cfg, total, start):
    if not cfg["run"]["progress"]:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, initial=start, unit="round", file=sys.stderr, dynamic_ncols=True,
                desc=cfg["algo"]["name"])


def _warm_kernels(learner):
    """Compile (or load from cache) the kernels before the clock starts; returns the seconds it took."""
    t0 = time.perf_counter()
    probe = Policy(learner.features, learner.policy.w.copy())
    saved = (learner.policy, learner.counters.copy(), learner.G2.copy())
    learner.policy = probe
    learner.advance(0, 1)
    learner.policy, learner.counters[:], learner.G2[:] = saved[0], saved[1], saved[2]
    return time.perf_counter() - t0


def run(config=None, out="runs/default", *, overwrite=False, resume=False, sets=None, progress=None):
    """Run one experiment. ``config``: a dict of sections or a path to a TOML file (None: the default
    experiment); ``sets``: ``section.key=value`` overrides. Returns the summary dict."""
    t_start = time.perf_counter()
    out = pathlib.Path(out)
    if resume and config is None and (out / "config.toml").exists():
        user = C.load(out / "config.toml")
    elif isinstance(config, (str, pathlib.Path)):
        user = C.load(config)
    else:
        user = config or {}
    user = C.apply_overrides(user, sets)
    if progress is not None:
        user.setdefault("run", {})["progress"] = bool(progress)
    cfg = C.resolve(user)
    cfg_toml = C.to_toml(cfg)
    if resume and (out / "config.toml").exists():
        saved = C.resolve(C.load(out / "config.toml"))
        if {s: {k: v for k, v in saved[s].items() if k != "progress"} for s in saved} != \
                {s: {k: v for k, v in cfg[s].items() if k != "progress"} for s in cfg}:
            raise ConfigError(f"--resume: the config differs from the one {out} was started with")
    out = _prepare_dir(out, overwrite, resume)

    task = build_task(cfg)
    stream = ContextStream(task, cfg)
    test = test_batch(task, cfg)
    tracked = tracked_batch(task, test, cfg)
    ckpt_dir = out / "checkpoints"
    ckpts = sorted(ckpt_dir.glob("ckpt-*.npz")) if resume else []
    t_base = time.perf_counter()
    base = build_base(task, cfg)
    base_seconds = time.perf_counter() - t_base
    policy = Policy(task.features, base.w)
    learner = make_learner(cfg, stream, policy, base)
    evaluator = Evaluator(test, tracked)
    start = 0
    stopped = False
    if ckpts:
        with np.load(ckpts[-1]) as z:
            learner.restore(z)
            start = int(z["round"])
            stopped = bool(z["stopped"])
            evaluator.err_sum, evaluator.count = float(z["err_sum"]), int(z["eval_count"])
    if not resume or not (out / "config.toml").exists():
        (out / "config.toml").write_text(cfg_toml)
    meta = run_metadata(cfg_toml, cfg["run"]["seed"])
    writers = {"rounds": PartWriter(out / "rounds", TRACE_SCHEMA, meta),
               "eval": PartWriter(out / "eval", EVAL_SCHEMA, meta),
               "tracked": PartWriter(out / "tracked", TRACKED_SCHEMA, meta)}
    for w in writers.values():
        w.truncate_from(start)
    ckpt_dir.mkdir(exist_ok=True)
    if start == 0:
        save_npz(out / "base.npz", policy_arrays(base))

    compile_seconds = _warm_kernels(learner)
    total = cfg["run"]["rounds"]
    every_eval = cfg["run"]["eval_every"]
    every_ckpt = checkpoint_interval(cfg)
    chunk = cfg["run"]["chunk"]
    bar = _progress(cfg, total, start)
    per_round = cfg["algo"]["batch"] if is_batched(cfg) else 1
    target = cfg["run"]["target_error"]
    if start == 0:
        err = evaluator(policy, 0, learner.counters, writers["eval"], writers["tracked"])
        stopped = target > 0 and err <= target
    t_loop = time.perf_counter()
    part_start = start
    t = start
    while t < total and not stopped:
        stop = min(total, t + chunk, (t // every_eval + 1) * every_eval)
        rows = learner.advance(t, stop - t)
        writers["rounds"].append({name: rows[:, i] for i, name in enumerate(TRACE_COLUMNS)})
        if bar is not None:
            bar.update(stop - t)
            c = learner.counters
            bar.set_postfix(mistake_rate=f"{c[5] / max(c[0] * per_round, 1):.4f}", refresh=False)
        t = stop
        if t % every_eval == 0 or t == total:
            err = evaluator(policy, t, learner.counters, writers["eval"], writers["tracked"])
            stopped = target > 0 and err <= target
        if t % every_ckpt == 0 or t == total or stopped:
            for w in writers.values():
                w.flush(part_start)
            part_start = t
            _checkpoint(ckpt_dir, learner, evaluator, t, cfg["run"]["keep_checkpoints"], stopped)
    if start == 0 and t == 0:       # stopped at round 0: still leave the evaluation and a checkpoint
        writers["eval"].flush(0)
        writers["tracked"].flush(0)
        _checkpoint(ckpt_dir, learner, evaluator, 0, cfg["run"]["keep_checkpoints"], stopped)
    if bar is not None:
        bar.close()
    loop_seconds = time.perf_counter() - t_loop
    summary = _summary(cfg, learner, evaluator, out, total, start)
    summary.update(wall_seconds=time.perf_counter() - t_start, compile_seconds=compile_seconds,
                   base_seconds=base_seconds, reached_target=bool(stopped),
                   rounds_per_second=(t - start) / loop_seconds if loop_seconds > 0 else float("inf"))
    write_json(out / "summary.json", summary)
    return summary


def _checkpoint(folder, learner, evaluator, round_, keep, stopped):
    arrays = {**policy_arrays(learner.policy), **learner.state(), "round": np.array(round_),
              "err_sum": np.array(evaluator.err_sum), "eval_count": np.array(evaluator.count),
              "stopped": np.array(stopped)}
    save_npz(folder / f"ckpt-{round_:012d}.npz", arrays)
    if keep:
        for old in sorted(folder.glob("ckpt-*.npz"))[:-keep]:
            old.unlink()


def _summary(cfg, learner, evaluator, out, total, start):
    from .trace import read_table
    ev = read_table(out / "eval")
    last = ev.slice(ev.num_rows - 1).to_pylist()[0]
    c = learner.counters
    summary = {name: (float(c[i]) if name == "mistakes_expected" else int(c[i])) for i, name in enumerate(COUNTERS)}
    summary.update(final_test_error=last["test_error"], final_test_error_avg=last["test_error_avg"],
                   final_mean_loglik_star=last["mean_loglik_star"], algo=cfg["algo"]["name"],
                   seed=cfg["run"]["seed"], resumed_from=start, features=cfg["task"]["kind"],
                   normalize=cfg["task"]["normalize"], kernel_threads=K_threads())
    return summary


def K_threads():
    import numba
    return numba.get_num_threads()
