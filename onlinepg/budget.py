"""Refusing up front a config whose arrays cannot fit in memory.

``estimate(cfg)`` lists the arrays a run holds: for its whole life (weights and optimiser state, the task's
tables, the held-out test set, a finite context pool, the tracked contexts) and one at a time (the exact
evaluation's scratch, one chunk of contexts with its responses and trace rows or one batched step, the
pretraining batch). ``check(cfg)`` compares the persistent arrays plus the largest transient one with the memory
available now and raises one ``ConfigError`` naming the fields of the largest term.
The estimate is a lower bound within a small factor: it exists to turn a config that would swap the machine
to death (task.N = 10^6, task.M = 10^9, test_contexts = 10^9, ...) into one clear line, not to police
configs near the limit.
"""
import os

from .errors import ConfigError

F8 = 8                      # float64 / int64 bytes
TRACE_WIDTH = 14            # per-round trace columns (learners.TRACE_COLUMNS)


def estimate(cfg):
    """[(what, fields, bytes, transient)] of the large arrays a run of the resolved ``cfg`` allocates;
    ``transient`` ones are not held at the same time as each other."""
    t, b, a, r = cfg["task"], cfg["base"], cfg["algo"], cfg["run"]
    k, N, d = t["k"], t["N"], t["d"]
    if t["kind"] == "constant":                # one-hot contexts over M directions, and the S ≈ M/tail slots
        d = t["M"] or max(2, int(round(k / ((k - 1) * t["gamma"] ** 2))))
    cells = t["kind"] == "cells"
    M = (t["M"] or max(1, int(round(1.0 / (N * t["gamma"] ** 2))))) if cells else 0
    ctx = 0 if cells else d                    # floats per context
    D = M * N * k if cells else d * k + k * k
    terms = [("weights and optimiser state (w, w0, Adagrad, checkpoint copies)",
              "task.M × task.N × task.k" if cells else "task.d × task.k + task.k²", 6 * D * F8, False)]
    if cells:
        terms.append(("the cells task's correct responses y*", "task.M × task.N", M * N * F8, False))
    n_test = min(t["test_contexts"], M) if cells else t["test_contexts"]
    test_fields = "task.test_contexts × (task.d + task.N)"
    terms.append(("the held-out test set", test_fields, n_test * (ctx + N + 1) * F8, False))
    terms.append(("the exact evaluation of the test set", test_fields, n_test * (N + 2) * F8, True))
    if t["stream"] != "iid":
        pool = t["pool"] or M
        terms.append(("the finite context pool", "task.pool × (task.d + task.N)", pool * (ctx + N + 1) * F8, False))
    batched = a["name"] == "pg_batch" or (a["name"] == "sgd" and a["batch"] > 1)
    if batched:
        terms.append(("one batched step (contexts, samples, log-probs, gradients)", "algo.batch × task.N",
                      a["batch"] * (ctx + 6 * N + 6) * F8, True))
    else:
        rows = min(r["chunk"], r["rounds"], r["eval_every"])
        extra = a["m"] if a["name"] == "best_of_m" else 1
        terms.append(("one chunk of contexts and their responses", "run.chunk × (task.d + task.N)",
                      rows * (ctx + N + 1) * F8 + rows * TRACE_WIDTH * F8 // r["trace_every"]
                      + extra * N * k * F8, True))
    if b["kind"] == "pretrain":
        terms.append(("the pretraining batch", "base.batch × (task.d + task.N)", b["batch"] * (ctx + 4 * N) * F8,
                      True))
    if r["tracked"] == "test":
        terms.append(("the tracked contexts", "run.tracked_count × task.N",
                      min(r["tracked_count"], n_test) * (ctx + 3 * N) * F8, False))
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


def check(cfg, available=None):
    """Raise ``ConfigError`` when the arrays of ``cfg`` exceed the available memory (``available`` bytes,
    default: what the machine has free now)."""
    available = available_bytes() if available is None else available
    if available is None:
        return
    terms = estimate(cfg)
    total = sum(t[2] for t in terms if not t[3]) + max([t[2] for t in terms if t[3]], default=0)
    if total <= available:
        return
    what, fields, size, _ = max(terms, key=lambda t: t[2])
    raise ConfigError(f"{fields} too large: the run would hold about {_gib(total)} of arrays ({what}: "
                      f"{_gib(size)}), more than the {_gib(available)} of memory available; lower {fields}")


def _gib(n):
    return f"{n / 2**30:.3g} GiB"
