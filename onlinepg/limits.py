"""Refusing up front a config that cannot run: its arrays exceed the memory, its output the disk, or its work
any machine's lifetime.

``estimate(cfg)`` lists the arrays a run holds: for its whole life (weights and optimiser state, the task's
tables, the held-out test set, a finite context pool, the tracked contexts) and one at a time (the exact
evaluation's scratch, one chunk of contexts with its responses and trace rows or one batched step, the
pretraining batch). ``check(cfg)`` compares the persistent arrays plus the largest transient one with the memory
available now and raises one ``ConfigError`` naming the fields of the largest term.
The estimate is a lower bound within a small factor: it exists to turn a config that would swap the machine
to death (task.N = 10^6, task.M = 10^9, test_contexts = 10^9, ...) into one clear line, not to police
configs near the limit.

``work_estimate(cfg)`` counts the tokens a run must at least sample or score; beyond ``MAX_TOKENS`` (decades of
computing: the kernels do a few million tokens a second) the config is refused naming the field, e.g. run.rounds
= 10^18, which would otherwise run until killed. ``disk_estimate(cfg)`` lists the bytes a run writes (traces,
checkpoints, the base weights); ``check(cfg, out=DIR)`` compares their sum with the free space of DIR's file
system and says what would fit.
"""
import os
import shutil
from pathlib import Path

from .errors import ConfigError
from .kernels.codes import NCOUNT, TRACE_SCHEMA
from .schedule import checkpoint_interval

F8 = 8                      # float64 / int64 bytes
TRACE_WIDTH = len(TRACE_SCHEMA)     # per-round trace columns (rounds/), every one 8 bytes
EVAL_WIDTH = 4 + NCOUNT + 9  # eval/ columns (engine.EVAL_SCHEMA): round, test error, its average, mean loglik,
#        the counters, and the 9 RLVR metrics (crossover k, ΔSE, three support fractions, SRR, NDR, two entropies)
TRACKED_WIDTH = 5           # tracked/ columns (engine.TRACKED_SCHEMA)
PASSK_WIDTH = 4             # passk/ columns (engine.PASSK_SCHEMA), one row per run.pass_k entry and evaluation
PART_BYTES = 8 * 2**10      # fixed bytes of one Parquet part: footer, schema, the resolved config in the metadata
NPZ_BYTES = 8 * 2**10       # fixed bytes of one .npz (a header per array and the zip directory)
MAX_TOKENS = 10**15         # at 10^6 tokens a second (this machine: 0.4–2·10^6 on the smallest tasks), 30 years


def _dims(cfg):
    """(D weights, floats per context, M cells contexts (0 for other tasks), held-out contexts) of ``cfg``."""
    t = cfg.task
    cells = t.kind == "cells"
    M = t.contexts_M if cells else 0
    return t.D, t.context_dim, M, min(t.test_contexts, M) if cells else t.test_contexts


def _weights_fields(cfg):
    return "task.M × task.N × task.k" if cfg.task.kind == "cells" else "task.d × task.k + task.k²"


def estimate(cfg):
    """[(what, fields, bytes, transient)] of the large arrays a run of the resolved ``cfg`` allocates;
    ``transient`` ones are not held at the same time as each other."""
    t, b, a, r = cfg.task, cfg.base, cfg.algo, cfg.run
    k, N = t.k, t.N
    D, ctx, M, n_test = _dims(cfg)
    cells = t.kind == "cells"
    terms = [("weights and optimiser state (w, w0, Adagrad, checkpoint copies)", _weights_fields(cfg), 6 * D * F8,
              False)]
    if cells:
        terms.append(("the cells task's correct responses y*", "task.M × task.N", M * N * F8, False))
    test_fields = "task.test_contexts × (task.d + task.N)"
    terms.append(("the held-out test set", test_fields, n_test * (ctx + N + 1) * F8, False))
    terms.append(("the exact evaluation of the test set", test_fields, n_test * (N + 2) * F8, True))
    if t.stream != "iid":
        pool = t.pool or M
        terms.append(("the finite context pool", "task.pool × (task.d + task.N)", pool * (ctx + N + 1) * F8, False))
    if cfg.algo.batched:
        terms.append(("one batched step (contexts, samples, log-probs, gradients)", "algo.batch × task.N",
                      a.batch * (ctx + 6 * N + 6) * F8, True))
    else:
        rows = min(r.chunk, r.rounds, r.eval_every)
        extra = a.m if a.name == "best_of_m" else 1
        terms.append(("one chunk of contexts and their responses", "run.chunk × (task.d + task.N)",
                      rows * (ctx + N + 1) * F8 + rows * TRACE_WIDTH * F8 // r.trace_every
                      + extra * N * k * F8, True))
    if b.kind == "pretrain":
        terms.append(("the pretraining batch", "base.batch × (task.d + task.N)", b.batch * (ctx + 4 * N) * F8,
                      True))
    if r.tracked == "test":
        terms.append(("the tracked contexts", "run.tracked_count × task.N",
                      min(r.tracked_count, n_test) * (ctx + 3 * N) * F8, False))
    return terms


def work_estimate(cfg):
    """[(what, fields, tokens, fix)] of the tokens a run of ``cfg`` samples or scores at the least — the rounds' (a
    pg round draws algo.group_size responses; best_of_m and pg_process may end a round early, so they count one),
    the exact evaluations' and the pretraining's — each with the change of one setting (the others as they are)
    that brings it within ``MAX_TOKENS``."""
    t, b, a, r = cfg.task, cfg.base, cfg.algo, cfg.run
    N = t.N
    if cfg.algo.batched:
        per_round, fields = N * a.batch, "run.rounds × algo.batch × task.N"
    elif a.name == "pg":
        per_round, fields = N * a.group_size, "run.rounds × algo.group_size × task.N"
    else:
        per_round, fields = N, "run.rounds × task.N"
    terms = [("the rounds' responses", fields, r.rounds * per_round,
              f"lower run.rounds to at most {MAX_TOKENS // per_round}")]
    per_eval = _dims(cfg)[3] * N
    spare = MAX_TOKENS // per_eval - 1 - r.eval_log_points   # evaluations at eval_every that would fit
    fix = f"lower task.test_contexts to at most {MAX_TOKENS // (_evaluations(cfg) * N)}"
    if spare >= 1:
        fix = f"raise run.eval_every to at least {-(-r.rounds // spare)} or {fix}"
    terms.append(("the exact evaluations of the test set", "run.rounds / run.eval_every × task.test_contexts × "
                  "task.N", _evaluations(cfg) * per_eval, fix))
    if b.kind == "pretrain":
        terms.append(("the pretraining batches", "base.steps × base.batch × task.N", b.steps * b.batch * N,
                      f"lower base.steps to at most {MAX_TOKENS // (b.batch * N)}"))
    return terms


def _evaluations(cfg):
    """Test-error evaluations of a run of ``cfg`` at the most: round 0, every eval_every, the log-spaced ones and
    the last round (schedule.Schedule)."""
    r = cfg.run
    return 1 + -(-r.rounds // r.eval_every) + r.eval_log_points


def disk_estimate(cfg):
    """[(what, fields, bytes, knob)] a run of the resolved ``cfg`` writes into its folder, at the most it keeps at
    once; ``knob`` (key, +1 / -1) is the run setting whose raising / lowering shrinks the term, or None.

    Traces count their raw column bytes (8 per value, ``TRACE_WIDTH`` values per traced round) plus a fixed
    ``PART_BYTES`` per Parquet part (one per table and checkpoint, at least). Parquet compresses: the trace parts of
    real runs measure 0.3–0.7 of the raw bytes, but columns of incompressible values (random float64s) take up to
    1.25 of them (dictionary pages), so the raw bytes are what a run can be promised to need, not a lower bound.
    Checkpoints are uncompressed .npz (weights, Adagrad state, counters): run.keep_checkpoints of them, plus the
    one being written, or all of them with keep_checkpoints = 0."""
    t, r = cfg.task, cfg.run
    D, _, _, n_test = _dims(cfg)
    weights = _weights_fields(cfg)
    rounds = r.rounds
    n_ckpt = -(-rounds // checkpoint_interval(cfg))
    rows = -(-rounds // r.trace_every)
    terms = [("rounds/, the per-round trace", "run.rounds / run.trace_every",
              rows * TRACE_WIDTH * F8 + min(rows, n_ckpt) * PART_BYTES, ("trace_every", +1))]
    n_eval = _evaluations(cfg)
    terms.append(("eval/, the test-error evaluations", "run.rounds / run.eval_every",
                  n_eval * EVAL_WIDTH * F8 + min(n_eval, n_ckpt + 1) * PART_BYTES, ("eval_every", +1)))
    terms.append(("passk/, the exact pass@k of every evaluation", "run.rounds / run.eval_every × len(run.pass_k)",
                  n_eval * len(r.pass_k) * PASSK_WIDTH * F8 + min(n_eval, n_ckpt + 1) * PART_BYTES,
                  ("eval_every", +1)))
    n_tracked = {"none": 0, "centres": t.centres, "test": min(r.tracked_count, n_test)}[r.tracked]
    if n_tracked:               # run.track_every = 0: at every evaluation
        every = "track_every" if r.track_every else "eval_every"
        events = 2 + rounds // r.track_every if r.track_every else n_eval
        terms.append(("tracked/, the tracked contexts' likelihoods", f"run.rounds / run.{every}",
                      events * n_tracked * TRACKED_WIDTH * F8 + min(events, n_ckpt + 1) * PART_BYTES, (every, +1)))
    kept = n_ckpt if r.keep_checkpoints == 0 else min(n_ckpt, r.keep_checkpoints + 1)
    terms.append(("checkpoints/, weights and optimiser state", f"run.keep_checkpoints × ({weights})",
                  kept * ((2 * D + NCOUNT) * F8 + NPZ_BYTES), ("keep_checkpoints", -1)))
    terms.append(("base.npz, the base weights", weights, D * F8 + NPZ_BYTES, None))
    return terms


def available_bytes():
    """Memory available to a new allocation now (Linux: MemAvailable, capped by a cgroup limit), or None."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = open(path).read().strip()
        except OSError:
            continue
        if raw.isdigit() and avail is not None:
            avail = min(avail, int(raw))
        break
    return avail


def free_disk_bytes(out):
    """(folder, bytes free) of the file system ``out`` will be written to: that of its nearest existing ancestor,
    plus what ``out`` already holds when it is an onlinepg folder (a resumed run's own files are in the estimate,
    an overwritten run's are freed); None when it cannot be told. Any other existing folder is not walked: the
    claim refuses it anyway, and ``--out /`` or a home folder must be refused at once, not after a walk of the
    whole disk."""
    from .outdir import MANIFEST
    folder = Path(out).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if folder == Path(out).absolute() and (folder / MANIFEST).is_file():
        free += sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(folder) for n in names
                    if os.path.isfile(os.path.join(d, n)))
    return folder, free


def check(cfg, available=None, out=None):
    """Raise ``ConfigError`` when the arrays of ``cfg`` exceed the available memory (``available`` bytes,
    default: what the machine has free now), when its work is beyond ``MAX_TOKENS``, or — given ``out``, the run
    folder — when what it writes exceeds the free space of ``out``'s file system (None: no disk check)."""
    _check_memory(cfg, available_bytes() if available is None else available)
    _check_work(cfg)
    if out is not None:
        _check_disk(cfg, out)


def _check_memory(cfg, available):
    if available is None:
        return
    terms = estimate(cfg)
    total = sum(t[2] for t in terms if not t[3]) + max([t[2] for t in terms if t[3]], default=0)
    if total <= available:
        return
    what, fields, size, _ = max(terms, key=lambda t: t[2])
    raise ConfigError(f"{fields} too large: the run would hold about {_gib(total)} of arrays ({what}: "
                      f"{_gib(size)}), more than the {_gib(available)} of memory available; lower {fields}")


def _check_work(cfg):
    for what, fields, tokens, fix in work_estimate(cfg):
        if tokens > MAX_TOKENS:
            raise ConfigError(f"{fields} too large: {what} alone would sample or score at least {tokens:.3g} tokens, "
                              f"more than {MAX_TOKENS:.0e}, which no run finishes (decades at a million tokens a "
                              f"second); {fix}")


def _check_disk(cfg, out):
    free = free_disk_bytes(out)
    if free is None:
        return
    folder, free = free
    terms = disk_estimate(cfg)
    total = sum(t[2] for t in terms)
    if total <= free:
        return
    what, fields, size, knob = max(terms, key=lambda t: t[2])
    fits = _what_fits(cfg, free, knob)
    raise ConfigError(f"{fields} too large: the run would write up to {_gib(total)} ({what}: {_gib(size)}; traces "
                      f"counted at their raw column bytes, which Parquet usually compresses), more than the "
                      f"{_gib(free)} free on the file system of {folder}; " + (" or ".join(fits) or "free some space"))


def _what_fits(cfg, free, knob):
    """The settings, one at a time, with which ``cfg``'s output fits in ``free`` bytes: ``knob``, that of the
    largest term (``disk_estimate``), and run.rounds, each at its least change (a bisection: the estimate is
    monotone in each)."""
    fits = []
    if knob is not None:
        key, sign = knob
        now = getattr(cfg.run, key)
        if sign > 0:        # raise it, up to rounds
            best = _bisect(cfg, free, key, max(now, 1), cfg.run.rounds, fits_high=True)
            if best is not None:
                fits.append(f"raise run.{key} to at least {best}")
        else:               # keep fewer checkpoints (0 keeps all of them)
            best = _bisect(cfg, free, key, 1, now - 1 if now else cfg.run.rounds, fits_high=False)
            if best is not None:
                fits.append(f"set run.{key} to at most {best}")
    best = _bisect(cfg, free, "rounds", 1, cfg.run.rounds - 1, fits_high=False)
    if best is not None:
        fits.append(f"lower run.rounds to at most {best}")
    return fits


def _bisect(cfg, free, key, lo, hi, fits_high):
    """The value of run.``key`` in [lo, hi] nearest its current one whose output fits in ``free`` bytes (None if
    none does): the least one when the large values fit (``fits_high``), else the greatest."""
    def fits(v):
        return sum(t[2] for t in disk_estimate(cfg.replace(run={key: v}))) <= free
    if lo > hi or not fits(hi if fits_high else lo):
        return None
    while lo < hi:
        if fits_high:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
        else:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _gib(n):
    return f"{n / 2**30:.3g} GiB"
