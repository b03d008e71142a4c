"""The streaming driver: ``run(config, out)`` plays an algorithm over a context stream chunk by chunk,
evaluates exactly every ``eval_every`` rounds, spills traces to Parquet parts, checkpoints, and resumes.

Output folder (the contract other tools read):
    config.toml    the fully resolved config
    summary.json   counters, final test error, timings
    rounds/        per-round trace (decimated by run.trace_every)
    eval/          exact test error, its running average, mean log-likelihood of y*, counters
    tracked/       exact log-likelihoods of the tracked contexts at every evaluation
    checkpoints/   ckpt-<round>.npz: weights (load_policy reads them), optimiser state, counters
    .onlinepg.lock the lock held while a process writes the folder (see onlinepg.outdir)

Reliability: the config (and base.path) is validated and the task and base built before an old run is
replaced; one process writes a folder at a time; traces are flushed by size as well as at every checkpoint, so
memory is bounded for any schedule; every file is written atomically.
"""
import errno
import math
import os
import sys
import time
import zipfile
import zlib

import numpy as np

from . import kernels as K, limits, outdir
from . import config as C
from .build import ContextStream, build_base, build_task, test_batch, tracked_batch
from .compile_ahead import ahead
from .errors import ConfigError, Interrupted, RunError
from .weights import policy_arrays, save_npz
from .kernels.codes import COUNTERS, TRACE_COLUMNS, TRACE_SCHEMA
from .learners import make_learner
from .schedule import Schedule, checkpoint_interval  # noqa: F401 (checkpoint_interval: re-exported)
from .policy import Policy
from .seeds import derive_seed
from .trace import PartWriter, run_metadata, write_json

EVAL_SCHEMA = {"round": np.int64, "test_error": np.float64, "test_error_avg": np.float64,
               "mean_loglik_star": np.float64, **{c: (np.float64 if c == "mistakes_expected" else np.int64)
                                                  for c in COUNTERS},
               "crossover_k": np.int64, "delta_se": np.float64, "support_preserved": np.float64,
               "support_shrunk": np.float64, "support_expanded": np.float64, "srr": np.float64, "ndr": np.float64,
               "entropy_ystar": np.float64, "entropy_sampled": np.float64}
TRACKED_SCHEMA = {"round": np.int64, "tracked_id": np.int64, "context_id": np.int64, "loglik_star": np.float64,
                  "likelihood": np.float64}
PASSK_SCHEMA = {"round": np.int64, "k": np.int64, "pass_at_k": np.float64, "base_pass_at_k": np.float64}
TIMING_KEYS = ("wall_seconds", "compile_seconds", "base_seconds", "rounds_per_second")


def config_hash(cfg):
    """A short hash of the resolved config (run.progress aside: it changes no number). Every checkpoint and
    every trace part's manifest line carries it, so ``--resume`` can tell whether they belong to this config."""
    import hashlib
    return hashlib.sha256(C.to_toml(cfg.quiet).encode()).hexdigest()[:16]


def _saved_config(out):
    """The resolved config a run folder was started with; refuses a missing, unreadable or incomplete one."""
    path = out / "config.toml"
    if not path.is_file():
        raise ConfigError(f"--resume: {out} holds no run (config.toml missing)")
    try:
        user = C.load(path)
    except ConfigError as exc:
        raise ConfigError(f"--resume: {exc}; the run cannot be resumed (start it again with --overwrite)") from None
    missing = [sec for sec in C.SCHEMA if sec not in user]
    if missing:
        raise ConfigError(f"--resume: {path} is incomplete (no [{missing[0]}] section; a run writes all of "
                          f"{', '.join(C.SCHEMA)}), so the run cannot be resumed; start it again with --overwrite")
    return user


def _resolve(config, out, resume, sets, progress):
    """The resolved config of this call (see ``run``), checked against the saved one when resuming."""
    saved = _saved_config(out) if resume else None
    if config is None:
        user = saved if resume else C.default_experiment(sets)
    elif isinstance(config, (str, os.PathLike)) and not isinstance(config, bool):
        user = C.load(config)
    elif isinstance(config, (dict, C.Spec)):
        user = config
    else:
        raise ConfigError("config must be None (the default experiment), a dict of sections (task, base, algo, "
                          "run), a resolved config (config.Spec) or a TOML file path, got "
                          f"{type(config).__name__} {config!r}")
    user = C.apply_overrides(user, sets)
    if progress is not None:
        if not isinstance(progress, bool):
            raise ConfigError(f"progress must be None, true or false, got {progress!r}")
        user.setdefault("run", {})["progress"] = progress
    cfg = C.resolve(user)
    if resume and C.resolve(saved).quiet != cfg.quiet:
        raise ConfigError(f"--resume: the config differs from the one {out} was started with")
    return cfg


class Evaluator:
    """Exact test error err(w) = 1 − mean p_w(y*|x) on the held-out set, its running average over
    evaluations (the random-iterate guarantee), the tracked contexts' log-likelihoods, and the exact metrics of
    RLVR practice against the base (docs/theory.md §3.5): pass@k on the ``run.pass_k`` grid (``passk/``), the
    crossover k*, ΔSE and the support kept, lost and gained (``eval/``)."""

    def __init__(self, policy, test, tracked, base_w, run):
        """``policy``: the run's policy (its feature map); the test set and the tracked contexts are fixed, so they
        are checked once here (``Policy.scorer``), not at every evaluation. ``base_w``: the base's weights, scored
        once; ``run``: the run spec (its pass@k grid, ΔSE's K, the support threshold, the entropy's contexts)."""
        self.test, self.tracked = test, tracked
        self.err_sum = 0.0
        self.count = 0
        self._score_test = policy.scorer(test.X, test.J, test.Ystar)
        self.ks = np.asarray(run.pass_k, np.float64)
        self._log_eps = math.log(-math.log(run.support_zeta) / run.support_k)
        self.base_ll = self._score_test(base_w)
        self.base_pass = np.empty(len(self.ks))
        K.pass_at_k(self.base_ll, self.ks, self.base_pass)
        base_se = np.empty(1)
        K.pass_at_k(self.base_ll, np.array([float(run.delta_se_k)]), base_se)
        self._base_pass_se = float(base_se[0])
        n = min(run.entropy_contexts, len(test.J))
        self._ent = (np.ascontiguousarray(test.X[:n]), np.ascontiguousarray(test.J[:n]),
                     np.ascontiguousarray(test.Ystar[:n]), np.empty(n),
                     policy.features.kernels.entropy_batch if n else None)   # parallel even for few rows: each
        #                                                   row is a whole N·k sweep (fig1: 62 µs), bits the same
        # the sampled entropy's draws: evaluation at round t, context b draws from stream t·n + b of its own seed,
        # so they do not touch the learner's streams and a resumed run draws the same ones
        N = policy.features.N
        self._ent_seed = derive_seed(run.seed, "entropy")
        self._ent_draw = (np.empty((n, 4), np.uint64), np.empty((n, N), np.int64), np.empty((n, N)), np.empty(n),
                          np.empty(n), np.empty(n), policy.features.kernel("sample_batch", n) if n else None)
        if tracked is not None:
            self._score_tracked = policy.scorer(tracked.X, tracked.J, tracked.Ystar)
            self._tracked_ids = {"tracked_id": np.arange(len(tracked.J)), "context_id": tracked.J.astype(np.int64)}

    def __call__(self, policy, round_, counters, eval_w, passk_w):
        ll = self._score_test(policy.w)
        err = float(1.0 - np.exp(ll).mean())
        self.err_sum += err
        self.count += 1
        row = {"round": [round_], "test_error": [err], "test_error_avg": [self.err_sum / self.count],
               "mean_loglik_star": [float(ll.mean())]}
        row.update({name: [counters[i]] for i, name in enumerate(COUNTERS)})
        practice, pass_k = self._practice(ll, err, policy, round_)
        row.update({key: [value] for key, value in practice.items()})
        eval_w.append(row)
        passk_w.append({"round": np.full(len(self.ks), round_), "k": self.ks.astype(np.int64),
                        "pass_at_k": pass_k, "base_pass_at_k": self.base_pass})
        return err

    def _practice(self, ll, err, policy, round_):
        """The eval row's RLVR metrics of log-likelihoods ``ll`` (test error ``err``), and pass@k on the grid:
        the crossover k* — the smallest grid k at which the base's pass@k exceeds the policy's, 0 if the policy
        does not lead at the grid's first k, −1 if it leads on the whole grid —, ΔSE = base pass@K − policy
        pass@1 (K = run.delta_se_k; pass@1 = 1 − err), the support fractions with SRR = kept/(kept + lost) (1
        when the base's support is empty) and NDR = gained/(kept + gained) (0 when the policy's is), the mean
        per-token entropy of the policy along y*'s prefixes over the first run.entropy_contexts test contexts, and
        the sampled sequence-level entropy on the same contexts: (1/N) Σ_i H(p_w(·|x, ŷ_<i)) along one on-policy
        sample ŷ per context (the chain rule makes it unbiased for H(p_w(·|x))/N), averaged."""
        pass_k = np.empty(len(self.ks))
        K.pass_at_k(ll, self.ks, pass_k)
        if not pass_k[0] > self.base_pass[0]:
            cross = 0
        else:
            over = np.flatnonzero(self.base_pass > pass_k)
            cross = int(self.ks[over[0]]) if len(over) else -1
        kept, lost, gained = K.support_fractions(self.base_ll, ll, self._log_eps)
        X, J, Y, ent, kernel = self._ent
        sampled = 0.0
        if kernel is not None:
            fm, w = policy.features.fm, policy.w
            kernel(fm, w, X, J, Y, ent)
            ystar_entropy = float(ent.mean()) / policy.features.N
            states, Yh, lse, lp, lq, ent2, sample = self._ent_draw
            K.seed_streams(self._ent_seed, round_ * len(J), states)
            sample(fm, w, w, X, J, K.POLICY, 0.0, states, Yh, lse, lp, lq)
            kernel(fm, w, X, J, Yh, ent2)
            sampled = float(ent2.mean()) / policy.features.N
        return {"crossover_k": cross, "delta_se": self._base_pass_se - (1.0 - err), "support_preserved": kept,
                "support_shrunk": lost, "support_expanded": gained,
                "srr": kept / (kept + lost) if kept + lost > 0 else 1.0,
                "ndr": gained / (kept + gained) if kept + gained > 0 else 0.0,
                "entropy_ystar": ystar_entropy if kernel is not None else 0.0, "entropy_sampled": sampled}, pass_k

    def track(self, policy, round_, tracked_w):
        """The tracked contexts' exact log-likelihoods at ``round_`` (nothing if the run tracks none)."""
        if self.tracked is not None:
            tl = self._score_tracked(policy.w)
            tracked_w.append({"round": np.full(len(tl), round_), **self._tracked_ids, "loglik_star": tl,
                              "likelihood": np.exp(tl)})


def _progress(cfg, total, start):
    if not cfg.run.progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, initial=start, unit="round", file=sys.stderr, dynamic_ncols=True,
                desc=cfg.algo.name)


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
    """Run one experiment into the folder ``out``; returns the summary dict.

    ``config``: None (the default experiment, ``config.default_experiment``: its [algo] section is pg_batch's
    and is dropped when ``sets`` switch ``algo.name``), a dict of sections, a resolved ``config.Spec``, or a
    path to a TOML file.
    ``sets``: ``section.key=value`` overrides. ``overwrite``: replace ``out`` if it is a run folder — only
    after the new config, its base weights and task have been built. ``resume``: continue the run in ``out``
    from its last checkpoint (``config`` None, or the same config); not with ``overwrite``. One process writes
    a folder at a time. Every bad argument raises ``ConfigError`` before anything is written; a full disk
    raises ``RunError``; Ctrl-C raises ``Interrupted`` (a KeyboardInterrupt) saying how to resume.
    """
    t_start = time.perf_counter()
    outdir.flags(overwrite, resume)
    out = outdir.check_path(out)
    cfg = _resolve(config, out, resume, sets, progress)
    limits.check(cfg, out=out)
    try:
        with outdir.OutDir(out, "run", overwrite=overwrite, resume=resume) as claim:
            return _run(cfg, claim, resume, t_start)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise RunError(f"no space left on the device of {out} ({exc.filename or 'writing the run'}); free "
                           f"some space, then continue with: onlinepg run --resume --out {out}") from None
        raise


TRACE_FOLDERS = ("rounds", "eval", "tracked", "passk")
START_OVER = "start over with --overwrite (or another --out)"


def _restore(out, ckpt_dir, learner, evaluator, cfg_hash):
    """(start round, stopped) from the newest checkpoint (0, False without one), once the folder's config
    (``cfg_hash``, its ``config_hash``), checkpoint and trace parts are known to agree (``_check_folder``); a
    corrupt checkpoint is refused."""
    listed = _check_folder(out)
    ckpts = sorted(ckpt_dir.glob("ckpt-*.npz"))
    if not ckpts:
        return 0, False
    path = ckpts[-1]
    try:
        with np.load(path) as z:
            saved = str(z["config_hash"]) if "config_hash" in z.files else None
            if saved != cfg_hash:
                raise ConfigError(
                    f"--resume: checkpoint {path.name} was written " + (
                        "by an older onlinepg (it carries no config hash)" if saved is None else
                        f"under another config than {out / 'config.toml'} now holds (was it edited, or the "
                        "checkpoint copied from another run?)") + f"; {START_OVER}")
            learner.restore(z)
            evaluator.err_sum, evaluator.count = float(z["err_sum"]), int(z["eval_count"])
            start, stopped = int(z["round"]), bool(z["stopped"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, ConfigError):
            raise
        why = " ".join(f"{type(exc).__name__}: {exc}".split())
        prev = (f"delete it to resume from {ckpts[-2].name}" if len(ckpts) > 1 else
                "no earlier checkpoint is kept: start the run again with --overwrite")
        raise ConfigError(f"--resume: checkpoint {path} is corrupt ({why}); {prev}") from None
    _check_parts(out, listed, start, cfg_hash)
    return start, stopped


def _check_folder(out):
    """The manifest's last line per file (``OutDir`` has checked that the folder has a valid run manifest);
    refuses a file in the trace or checkpoint folders that onlinepg did not write (resume would read or delete
    it)."""
    listed = outdir.listed_files(out)
    for sub in TRACE_FOLDERS + ("checkpoints",):
        folder = out / sub
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            rel = f"{sub}/{p.name}"
            if rel not in listed and outdir.temporary_of(rel) not in listed:
                raise ConfigError(f"--resume: {out / rel} is not a file this run wrote (a stray file in {sub}/); "
                                  f"move it out of the run folder, or {START_OVER}")
    return listed


def _check_parts(out, listed, start, want):
    """Every trace part before the checkpoint at ``start`` is there, whole, and of this config."""
    import pyarrow.parquet as pq

    from .trace import part_key
    for rel, e in sorted(listed.items()):
        if rel.split("/")[0] not in TRACE_FOLDERS or e.get("removed") or "rows" not in e:
            continue
        path = out / rel
        if part_key(path)[0] >= start:
            continue                # after the checkpoint: rewritten by the resumed run
        if e.get("config") != want:
            raise ConfigError(f"--resume: trace part {rel} was written under another config; {START_OVER}")
        if not path.is_file():
            raise ConfigError(f"--resume: trace part {rel} was deleted (the trace before round {start} would be "
                              f"incomplete); {START_OVER}")
        try:
            rows = pq.read_metadata(path).num_rows
        except Exception as exc:    # pyarrow raises its own error types for a damaged footer
            raise ConfigError(f"--resume: trace part {rel} is unreadable ({type(exc).__name__}: truncated or "
                              f"damaged); {START_OVER}") from None
        if rows != e["rows"]:
            raise ConfigError(f"--resume: trace part {rel} holds {rows} rows where {e['rows']} were written; "
                              f"{START_OVER}")


def _run(cfg, claim, resume, t_start):
    out = claim.path
    task = build_task(cfg)
    stream = ContextStream(task, cfg)
    test = test_batch(task, cfg)
    tracked = tracked_batch(task, test, cfg)
    # a cold cache: the evaluations' kernels compile in a helper process meanwhile (onlinepg.compile_ahead.ahead)
    helper = ahead(task.features, [len(test.J), 0 if tracked is None else len(tracked.J)],
                   min(cfg.run.entropy_contexts, len(test.J)))
    ckpt_dir = out / "checkpoints"
    t_base = time.perf_counter()
    base = build_base(task, cfg)
    base_seconds = time.perf_counter() - t_base
    policy = Policy(task.features, base.w if cfg.algo.init == "base" else np.zeros_like(base.w))
    learner = make_learner(cfg, stream, policy, base)
    evaluator = Evaluator(policy, test, tracked, base.w, cfg.run)
    h = config_hash(cfg)
    start, stopped = _restore(out, ckpt_dir, learner, evaluator, h) if resume else (0, False)
    claim.replace()                 # the new run is known to start: only now is an old run replaced
    cfg_toml = C.to_toml(cfg)
    if not resume:
        outdir.write_text(out / "config.toml", cfg_toml)
    meta = run_metadata(cfg_toml, cfg.run.seed)
    writers = {"rounds": PartWriter(out / "rounds", TRACE_SCHEMA, meta, config_hash=h),
               "eval": PartWriter(out / "eval", EVAL_SCHEMA, meta, config_hash=h),
               "tracked": PartWriter(out / "tracked", TRACKED_SCHEMA, meta, config_hash=h),
               "passk": PartWriter(out / "passk", PASSK_SCHEMA, meta, config_hash=h)}
    for w in writers.values():
        w.truncate_from(start)
        w.start_segment(start)
    outdir.makedirs(ckpt_dir)
    if start == 0:
        save_npz(out / "base.npz", policy_arrays(base))

    compile_seconds = _warm_kernels(learner)
    total = cfg.run.rounds
    schedule = Schedule(cfg)
    every_ckpt = checkpoint_interval(cfg)
    chunk = cfg.run.chunk
    bar = _progress(cfg, total, start)
    helper.wait()
    per_round = cfg.algo.batch if cfg.algo.batched else 1
    t = start
    try:
        if start == 0:
            err = evaluator(policy, 0, learner.counters, writers["eval"], writers["passk"])
            evaluator.track(policy, 0, writers["tracked"])
            stopped = _should_stop(cfg, err, learner.counters)
        t_loop = time.perf_counter()
        while t < total and not stopped:
            stop = min(total, t + chunk, schedule.next_event(t), (t // every_ckpt + 1) * every_ckpt)
            rows = learner.advance(t, stop - t)
            writers["rounds"].append({name: rows[:, i] for i, name in enumerate(TRACE_COLUMNS)})
            if bar is not None:
                bar.update(stop - t)
                c = learner.counters
                bar.set_postfix(mistake_rate=f"{c[5] / max(c[0] * per_round, 1):.4f}", refresh=False)
            t = stop
            if schedule.is_eval(t):
                err = evaluator(policy, t, learner.counters, writers["eval"], writers["passk"])
                stopped = _should_stop(cfg, err, learner.counters)
            if schedule.is_track(t) or stopped:         # an early stop still records where it ended
                evaluator.track(policy, t, writers["tracked"])
            if t % every_ckpt == 0 or t == total or stopped:
                for w in writers.values():
                    w.flush()
                    w.start_segment(t)
                _checkpoint(ckpt_dir, learner, evaluator, t, cfg.run.keep_checkpoints, stopped, h)
        if start == 0 and t == 0:       # stopped at round 0: still leave the evaluation and a checkpoint
            for name in ("eval", "tracked", "passk"):
                writers[name].flush()
            _checkpoint(ckpt_dir, learner, evaluator, 0, cfg.run.keep_checkpoints, stopped, h)
    except KeyboardInterrupt:
        kept = sorted(ckpt_dir.glob("ckpt-*.npz"))
        saved = f"round {int(kept[-1].stem.split('-')[1])}" if kept else "no checkpoint yet"
        raise Interrupted(f"interrupted at round {t}; the run is saved up to its last checkpoint ({saved}); "
                          f"continue it with: onlinepg run --resume --out {out}") from None
    finally:
        if bar is not None:
            bar.close()
    loop_seconds = time.perf_counter() - t_loop
    summary = _summary(cfg, learner, evaluator, out, total, start)
    target = cfg.run.target_error
    summary.update(wall_seconds=time.perf_counter() - t_start, compile_seconds=compile_seconds,
                   base_seconds=base_seconds, stopped_early=bool(stopped),
                   reached_target=bool(0 < target and summary["final_test_error"] <= target),
                   rounds_per_second=(t - start) / loop_seconds if loop_seconds > 0 else float("inf"))
    write_json(out / "summary.json", summary)
    return summary


def _should_stop(cfg, err, counters):
    """Checked at every evaluation (so the stopping round is the same for any chunk size): the exact test
    error reached run.target_error, or the reward queries (ORM + PRM) reached run.max_queries."""
    r = cfg.run
    queries = counters[COUNTERS.index("orm_queries")] + counters[COUNTERS.index("prm_queries")]
    return (r.target_error > 0 and err <= r.target_error) or (0 < r.max_queries <= queries)


def _checkpoint(folder, learner, evaluator, round_, keep, stopped, cfg_hash):
    arrays = {**policy_arrays(learner.policy), **learner.state(), "round": np.array(round_),
              "err_sum": np.array(evaluator.err_sum), "eval_count": np.array(evaluator.count),
              "stopped": np.array(stopped), "config_hash": np.array(cfg_hash)}
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
                   final_mean_loglik_star=last["mean_loglik_star"], algo=cfg.algo.name,
                   seed=cfg.run.seed, resumed_from=start, features=cfg.task.kind,
                   normalize=cfg.task.normalize, kernel_threads=K_threads())
    return summary


def K_threads():
    import numba
    return numba.get_num_threads()
