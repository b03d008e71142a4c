"""Likelihood Quantile (docs/theory.md §5): exact likelihoods of the correct responses over a context set, and the
empirical estimators built on them.

Everything is in natural-log space. A sequence likelihood p(y*|x) of 10^−300 and far below is ordinary here
(k^−N for k = 10, N = 400 is 10^−400, which float64 cannot hold), so the estimators take log-likelihoods and
return log-likelihoods; ``format_likelihood`` prints one as ``3.2e-412`` for people.

Evaluation — ``evaluate_likelihoods(policy, batch)`` streams a context set through the ``prange`` kernel
``loglik_batch`` in chunks of ``chunk`` rows and returns, per context, log p(y*|x), the min-token log-prob
min_i log p(y*_i | x, y*_<i) and, on request, the per-token log-probs along the correct path.
``evaluate_task(policy, task, n)`` does the same without materialising the contexts: it draws them chunk by
chunk from the task's keyed stream ``"lq"`` (identical to ``task.draw(0, n, stream="lq")``). Every row is
independent, so the numbers are identical for any chunk size and any number of Numba threads.

Estimators — with ℓ_(1) ≤ … ≤ ℓ_(n) the sorted exact log-likelihoods of n contexts:

* ``likelihood_cdf``:  F̂(α) = #{i : ℓ_i ≤ log α} / n;
* ``likelihood_quantile``:  log Q̂(ε) = ℓ_(⌈εn⌉) — the likelihood that all but the worst ⌈εn⌉ − 1 contexts
  (at most an ε fraction) clear;
* ``token_likelihood_quantile``:  log Q̂^TL(ε), the same order statistic of the min-token log-probs;
* ``alpha_tail``:  log of α · P̂[p(y*|x) > α] = log α + log(1 − F̂(α)).
"""
import math
from dataclasses import dataclass

import numpy as np

from . import validate as v
from .help_defaults import DEFAULT_CONTEXTS, DEFAULT_EPS
from .errors import ConfigError
from .policy import Policy
from .tasks import Batch, CellsTask

DEFAULT_CHUNK = 8192
LQ_STREAM = "lq"
# ⌈εn⌉ is taken with this relative slack: 0.7 · 10 is 7.000000000000001 in float64 and must give 7, not 8.
_CEIL_SLACK = 1e-12
_LOG10 = math.log(10.0)


@dataclass
class Likelihoods:
    """Exact scores of the correct responses over n contexts, natural logs.

    loglik      float64[n]     log p(y*|x)
    min_token   float64[n]     min_i log p(y*_i | x, y*_<i)
    token_logp  float64[n, N]  log p(y*_i | x, y*_<i), or None when not requested
    """

    loglik: np.ndarray
    min_token: np.ndarray
    token_logp: np.ndarray = None

    def __len__(self):
        return len(self.loglik)


# -- exact evaluation ------------------------------------------------------------------------------

def _check_policy(policy):
    if not isinstance(policy, Policy):
        raise ConfigError(f"policy must be an onlinepg.Policy, got {type(policy).__name__}")
    return policy


class _Evaluator:
    """Output buffers plus one reusable per-token scratch of ``chunk`` rows (when the caller does not keep
    the per-token log-probs, so memory stays O(chunk · N) for any n)."""

    def __init__(self, policy, n, chunk, token_logp):
        self.policy = policy
        self.N = policy.features.N
        self.out = Likelihoods(np.empty(n), np.empty(n), np.empty((n, self.N)) if token_logp else None)
        self.scratch = None if token_logp else np.empty((min(chunk, max(n, 1)), self.N))

    def __call__(self, start, X, J, Y):
        m = len(Y)
        stop = start + m
        tok = self.out.token_logp[start:stop] if self.out.token_logp is not None else self.scratch[:m]
        f = self.policy.features
        f.kernel("loglik_batch", m)(f.fm, self.policy.w, X, J, Y, self.out.loglik[start:stop],
                                    self.out.min_token[start:stop], tok)


def evaluate_likelihoods(policy, batch, *, chunk=DEFAULT_CHUNK, token_logp=False):
    """Exact log-likelihoods of ``batch.Ystar`` under ``policy`` for every context of ``batch``.

    policy      an ``onlinepg.Policy``
    batch       an ``onlinepg.Batch``: X float64[n, d] (d = 0 for cells), J int64[n], Ystar int64[n, N]
    chunk       rows per kernel call (bounds the per-token scratch; any value gives the same numbers)
    token_logp  also return the per-token log-probs float64[n, N]
    Returns ``Likelihoods``.
    """
    policy = _check_policy(policy)
    if not isinstance(batch, Batch):
        raise ConfigError(f"batch must be an onlinepg.Batch (X, J, Ystar), got {type(batch).__name__}")
    chunk = v.integer("chunk", chunk, 1)
    X, J = policy._contexts(batch.X, batch.J)
    Y = policy._responses("Ystar", batch.Ystar, len(X))
    n = len(Y)
    ev = _Evaluator(policy, n, chunk, token_logp)
    for s in range(0, n, chunk):
        ev(s, X[s:s + chunk], J[s:s + chunk], Y[s:s + chunk])
    return ev.out


def evaluate_task(policy, task, n, *, stream=LQ_STREAM, chunk=DEFAULT_CHUNK, token_logp=False):
    """``evaluate_likelihoods`` over ``n`` contexts of ``task`` drawn chunk by chunk from its keyed stream
    ``stream`` — the same numbers as ``evaluate_likelihoods(policy, task.draw(0, n, stream))`` without
    holding the n contexts in memory. A ``CellsTask`` with M ≤ n is evaluated on all its M contexts once
    each (the exact distribution; then ``len(result) == M``)."""
    policy = _check_policy(policy)
    n = v.integer("contexts", n, 1)
    chunk = v.integer("chunk", chunk, 1)
    if policy.features != task.features:
        raise ConfigError(f"the policy's features {policy.features} do not match the task's {task.features}")
    if isinstance(task, CellsTask) and task.M <= n:
        return evaluate_likelihoods(policy, task.all_contexts(), chunk=chunk, token_logp=token_logp)
    ev = _Evaluator(policy, n, chunk, token_logp)
    for s in range(0, n, chunk):
        b = task.draw(s, min(chunk, n - s), stream=stream)
        ev(s, b.X, b.J, b.Ystar)
    return ev.out


def lq_contexts(task, n, stream=LQ_STREAM):
    """The context set ``evaluate_task`` uses, materialised (a ``Batch``): all M contexts of a cells task
    with M ≤ n, else contexts 0 … n−1 of the task's stream ``stream``."""
    n = v.integer("contexts", n, 1)
    if isinstance(task, CellsTask) and task.M <= n:
        return task.all_contexts()
    return task.draw(0, n, stream=stream)


# -- estimators ------------------------------------------------------------------------------------

def _log_values(name, values, attr):
    """A float64[n] of log-likelihoods (n ≥ 1, no NaN; −inf allowed) from an array or ``Likelihoods``."""
    if isinstance(values, Likelihoods):
        values = getattr(values, attr)
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(f"{name} must be a non-empty 1-D array of log-likelihoods, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ConfigError(f"{name} must not contain NaN")
    return arr


def _grid(name, values, lo=None, hi=None):
    """A float64 array (any shape; scalars become 0-d) of finite values in the open interval (lo, hi)."""
    rng = f"in ({'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'})"
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be finite numbers {rng}, got {values!r}") from None
    bad = ~np.isfinite(arr)
    if lo is not None:
        bad |= arr <= lo
    if hi is not None:
        bad |= arr >= hi
    if bad.any():
        raise ConfigError(f"{name} must be finite numbers {rng}, got {float(arr[bad].ravel()[0])!r}")
    return arr


def _scalar_or_array(x, like):
    return float(x) if np.ndim(like) == 0 else x


def eps_grid(eps):
    """Validate ε values: numbers in the open interval (0, 1)."""
    return _grid("eps", eps, 0.0, 1.0)


def order_index(eps, n):
    """⌈εn⌉ (1-based order statistic used by Q̂(ε)), computed with a 1e-12 relative slack against float
    rounding of εn; always in [1, n]."""
    k = np.ceil(np.asarray(eps, dtype=float) * n * (1.0 - _CEIL_SLACK)).astype(np.int64)
    return np.clip(k, 1, n)


def likelihood_cdf(loglik, log_alpha):
    """Empirical likelihood CDF F̂(α) = #{i : log p(y*|x_i) ≤ log α} / n.

    loglik     float64[n] log p(y*|x) (or a ``Likelihoods``)
    log_alpha  float or float64[...] natural logs of the thresholds α (any finite value)
    Returns F̂ with the shape of ``log_alpha`` (a float for a scalar), values in [0, 1].
    """
    ll = np.sort(_log_values("loglik", loglik, "loglik"))
    la = _grid("log_alpha", log_alpha)
    return _scalar_or_array(np.searchsorted(ll, la, side="right") / len(ll), log_alpha)


def likelihood_quantile(loglik, eps):
    """Empirical Likelihood Quantile, log Q̂(ε) (docs/theory.md §5).

    Q(ε) = sup{α : F(α) ≤ ε}: ignore the worst ε-fraction of contexts; Q is the likelihood the rest clear.
    Estimator: with ℓ_(1) ≤ … ≤ ℓ_(n) the sorted exact log-likelihoods, log Q̂(ε) = ℓ_(⌈εn⌉). At most
    ⌈εn⌉ − 1 < εn contexts fall below it and at least n − ⌈εn⌉ + 1 ≥ (1−ε)n clear it. (It is the lower
    empirical quantile inf{α : F̂(α) ≥ ε}; the plug-in sup{α : F̂(α) ≤ ε} = ℓ_(⌊εn⌋+1) differs only when εn
    is an integer.)

    loglik  float64[n] log p(y*|x) (or a ``Likelihoods``)
    eps     float or float64[...] in (0, 1)
    Returns natural-log values with the shape of ``eps`` (a float for a scalar).
    """
    ll = np.sort(_log_values("loglik", loglik, "loglik"))
    e = eps_grid(eps)
    return _scalar_or_array(ll[order_index(e, len(ll)) - 1], eps)


def token_likelihood_quantile(min_token, eps):
    """Empirical token-level Likelihood Quantile, log Q̂^TL(ε): ``likelihood_quantile`` applied to the
    min-token log-probs m_i = min_j log p(y*_j | x_i, y*_<j) instead of the sequence log-likelihoods.
    Since m_i ≥ log p(y*|x_i) for every context, Q̂^TL(ε) ≥ Q̂(ε) for every ε; the uniform policy has
    Q^TL = 1/k whatever N, while Q = k^−N.

    min_token  float64[n] (or a ``Likelihoods``)
    eps        float or float64[...] in (0, 1)
    """
    return likelihood_quantile(_log_values("min_token", min_token, "min_token"), eps)


def alpha_tail(loglik, log_alpha):
    """log of the α-tail α · P̂[p(y*|x) > α] = log α + log(1 − F̂(α)); −inf where every context has
    likelihood ≤ α. (The mass of queries-worth of contexts above α: the ORM barrier's figure of merit.)

    loglik     float64[n] log p(y*|x) (or a ``Likelihoods``)
    log_alpha  float or float64[...] natural logs of α
    """
    F = np.asarray(likelihood_cdf(loglik, log_alpha))
    la = np.asarray(log_alpha, dtype=float)
    with np.errstate(divide="ignore"):
        out = la + np.log1p(-F)
    return _scalar_or_array(out, log_alpha)


def log_alpha_grid(logliks, num=256):
    """A grid of ``num`` natural-log thresholds spanning the given log-likelihood arrays (for CDF / α-tail
    curves): from just below the smallest finite value to 0 (α = 1)."""
    finite = np.concatenate([np.asarray(a)[np.isfinite(a)] for a in logliks])
    lo = float(finite.min()) if finite.size else -1.0
    lo = min(lo, -1e-3) * 1.02
    return np.linspace(lo, 0.0, int(num))


def lq_profile(lik, eps=DEFAULT_EPS):
    """Q̂ and Q̂^TL on a grid of ε from one ``Likelihoods``: a dict of float64 columns
    ``eps, log_Q, log_Q_TL, Q, Q_TL`` (Q and Q_TL underflow to 0 below ~1e-308; the logs are exact)."""
    e = np.atleast_1d(eps_grid(eps)).astype(float)
    lq = np.atleast_1d(likelihood_quantile(lik.loglik, e))
    lt = np.atleast_1d(token_likelihood_quantile(lik.min_token, e))
    return {"eps": e, "Q": np.exp(lq), "Q_TL": np.exp(lt), "log_Q": lq, "log_Q_TL": lt}


def format_likelihood(log_value, digits=3):
    """A likelihood given by its natural log as text, e.g. -948.2 → '8.12e-412' (beyond float64's range)."""
    if not np.isfinite(log_value):
        return "0" if log_value < 0 else "inf"
    l10 = log_value / _LOG10
    e = math.floor(l10)
    mant = 10.0 ** (l10 - e)
    if mant >= 10.0 - 0.5 * 10.0 ** (1 - digits):   # rounding would print 10.0e..
        mant, e = mant / 10.0, e + 1
    return f"{mant:.{digits - 1}f}e{e:+03d}"


# -- the `onlinepg lq` command as a function -------------------------------------------------------

@dataclass
class LQReport:
    """What ``lq_report`` computed: the source (weights, task, run), the exact ``Likelihoods`` of the
    context set, the ``lq_profile`` columns, a description of the context set, and the Parquet path."""

    source: object
    likelihoods: Likelihoods
    table: dict
    contexts: str
    path: object = None

    def text(self):
        """The table ``onlinepg lq`` prints: ε, Q(ε), Q^TL(ε) and their natural logs."""
        s = self.source
        rnd = f" (round {s.round})" if s.round is not None else ""
        err = 1.0 - float(np.exp(self.likelihoods.loglik).mean())
        lines = [f"weights   {s.weights}{rnd}", f"contexts  {self.contexts}",
                 f"error     1 - mean p(y*|x) = {err:.6g}", "",
                 f"{'eps':>8} {'Q(eps)':>12} {'Q_TL(eps)':>12} {'ln Q(eps)':>14} {'ln Q_TL(eps)':>14}"]
        t = self.table
        for i in range(len(t["eps"])):
            lines.append(f"{t['eps'][i]:>8g} {format_likelihood(t['log_Q'][i]):>12} "
                         f"{format_likelihood(t['log_Q_TL'][i]):>12} {t['log_Q'][i]:>14.6g} "
                         f"{t['log_Q_TL'][i]:>14.6g}")
        return "\n".join(lines)


def lq_report(source, *, contexts=DEFAULT_CONTEXTS, eps=DEFAULT_EPS, which="final", config=None, out=None,
              write=True, chunk=DEFAULT_CHUNK, overwrite=False):
    """``onlinepg lq`` as a function: exact Q̂(ε) and Q̂^TL(ε) of a run's weights (or a weights file).

    source    a run folder or a weights .npz (``save_policy`` output, ``base.npz`` or a checkpoint)
    contexts  n: contexts 0 … n−1 of the task's dedicated stream ``"lq"`` (fresh: neither training nor
              test contexts); a cells task with M ≤ n is evaluated on all its M contexts
    eps       ε grid in (0, 1)
    which     run folders: 'final' (last checkpoint), 'base', a checkpoint round, or a weights path
    config    a run config TOML giving the task; required for a weights file outside a run folder
    out       output folder, like every ``--out``: it must be missing or empty (``overwrite``: or a folder an
              earlier ``lq --out`` wrote), and receives ``lq.parquet``. Default: ``lq.parquet`` is written in the run
              folder, or beside the weights file, replacing only a table an earlier ``onlinepg lq`` wrote
    Returns an ``LQReport``; with ``write`` the table goes to ``out`` with columns eps, Q, Q_TL, log_Q,
    log_Q_TL (float64) and the weights, round, context set and run config in the file metadata.
    """
    from .outdir import OutDir, check_path, flags, may_replace
    from .runfolder import open_source
    n = v.integer("contexts", contexts, 1)
    eps = eps_grid(eps)
    flags(overwrite, False)
    if out is not None:
        check_path(out)
    src = open_source(source, which=which, config=config)
    lik = evaluate_task(src.policy, src.task, n, chunk=chunk)
    if isinstance(src.task, CellsTask) and len(lik) == src.task.M:
        desc = f"all M = {src.task.M} contexts of the cells task (exact expectation)"
    else:
        desc = f"{n} fresh contexts of the task (stream '{LQ_STREAM}', contexts 0..{n - 1})"
    f = src.policy.features
    desc += f"; {f.kind} k={f.k} N={f.N}" + (f" d={f.d}" if f.kind == "bigram" else f" M={f.M}")
    report = LQReport(src, lik, lq_profile(lik, eps), desc)
    if write:
        import pathlib
        if out is None:
            folder = pathlib.Path(source) if pathlib.Path(source).is_dir() else pathlib.Path(source).parent
            target = folder / "lq.parquet"
            if not _written_by_lq(target):      # an earlier `onlinepg lq` table is replaced; nothing else is
                may_replace(target, "lq")
            report.path = write_lq_table(report, target)
        else:
            with OutDir(out, "lq", overwrite=overwrite) as claim:
                report.path = write_lq_table(report, claim.replace() / "lq.parquet")
    return report


def _written_by_lq(path):
    """True if ``path`` is a Parquet file whose footer says ``onlinepg lq`` wrote it."""
    import pyarrow.parquet as pq
    try:
        return b"onlinepg.lq.weights" in (pq.read_schema(path).metadata or {})
    except Exception:               # missing, not Parquet, unreadable: not ours to replace
        return False


def write_lq_table(report, path):
    """Write ``report.table`` as one Parquet file (temporary name, then rename); returns the path."""
    import pathlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import config as C
    from .trace import run_metadata
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"--out: folder {path.parent} does not exist")
    s = report.source
    meta = run_metadata(C.to_toml(s.cfg), s.cfg.run.seed)
    meta.update({"onlinepg.lq.weights": str(s.weights), "onlinepg.lq.round": str(s.round),
                 "onlinepg.lq.contexts": report.contexts, "onlinepg.lq.n": str(len(report.likelihoods))})
    table = pa.table({k: np.asarray(c, dtype=np.float64) for k, c in report.table.items()})
    table = table.replace_schema_metadata({k.encode(): val.encode() for k, val in meta.items()})
    from .outdir import write_bytes
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return write_bytes(path, sink.getvalue().to_pybytes())
