"""Where sweep cells run: a local process pool or a Dask cluster, behind one small interface.

A backend is a context manager with ``name``, ``slots`` (cells that can run at once), ``depth`` (cells kept
in flight), ``submit(task) -> concurrent.futures.Future`` and ``restart()``. Both run the same
``run_cell`` in a worker process that was started with ``NUMBA_NUM_THREADS`` = the sweep's ``threads``
(default 1), so workers never oversubscribe the cores, and both share the Numba disk cache (the package's
``__pycache__``, or ``NUMBA_CACHE_DIR`` when set): each worker loads the compiled kernels once.
"""
import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import socket
import sys
import time
import traceback

from .errors import ConfigError

BACKENDS = ("local", "dask")
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_env(threads):
    """Environment a worker process must start with (before it imports numba or numpy)."""
    return {name: str(threads) for name in THREAD_VARIABLES}


def run_cell(task):
    """Run one cell in this worker; never raises for a failing run: the error comes back in the record.

    ``task``: {"out": run folder, "config": resolved run config, "mode": 'fresh' | 'resume', "threads": int}.
    Returns {"status", "summary", "cell_seconds", "host", "worker", "error_type", "error_message",
    "error_traceback"} — small, so a Dask worker ships back a summary and never a trace.
    """
    t0 = time.perf_counter()
    rec = {"status": "failed", "summary": None, "host": socket.gethostname(), "worker": _worker_name(),
           "error_type": None, "error_message": None, "error_traceback": None}
    try:
        from .engine import run
        _numba_threads(task["threads"])
        summary = None
        if task["mode"] == "resume":
            try:
                summary = run(task["config"], task["out"], resume=True, progress=False)
            except Exception:    # an unusable partial run is no reason to fail: start the cell afresh
                summary = None
        if summary is None:
            summary = run(task["config"], task["out"], overwrite=True, progress=False)
        rec.update(status="completed", summary=summary)
    except Exception as exc:
        rec.update(error_type=type(exc).__name__, error_message=str(exc),
                   error_traceback="".join(traceback.format_exception(exc)[-6:]))
    rec["cell_seconds"] = time.perf_counter() - t0
    return rec


def _worker_name():
    if "distributed" in sys.modules:
        try:
            from distributed import get_worker
            return get_worker().address
        except ValueError:          # not inside a Dask worker
            pass
    return f"pid {os.getpid()}"


def _numba_threads(threads):
    """Reconcile numba with the worker's environment, then cap the threads a cell may use.

    numba reads NUMBA_NUM_THREADS when imported and re-reads the environment at every compilation, refusing a
    new value once its thread pool runs. A worker may import numba before its environment is final (a spawned
    child re-imports the parent's ``__main__``, e.g. the ``onlinepg`` console script, before a Dask Nanny
    applies its ``env``), so reload before the pool starts; external workers get the cap all the same.
    """
    import numba
    try:
        numba.config.reload_config()
    except RuntimeError:        # the pool already runs with another size: keep that size for good
        os.environ["NUMBA_NUM_THREADS"] = str(numba.config.NUMBA_NUM_THREADS)
        numba.config.reload_config()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _warm(threads):
    """Import the engine (and numba) in a fresh worker, so the first cell is not timed doing it."""
    from . import engine  # noqa: F401
    _numba_threads(threads)
    return os.getpid()


@contextlib.contextmanager
def _environ(values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Backend:
    """Started on the outermost ``with`` and stopped on leaving it, so one started backend can serve several
    sweeps (``run_sweep(..., backend=started)``) and a sweep never stops a backend it did not start."""
    name = None

    def __enter__(self):
        self._entered = getattr(self, "_entered", 0) + 1
        if self._entered == 1:
            try:
                self._start()
            except BaseException:
                self._entered = 0
                self._stop(True)
                raise
        return self

    def __exit__(self, exc_type, *exc):
        self._entered -= 1
        if self._entered == 0:
            self._stop(exc_type is not None)


class LocalBackend(Backend):
    """A pool of ``workers`` spawned processes (default: one per core available to this process)."""
    name = "local"

    def __init__(self, workers=None, threads=1):
        self.workers = workers or _cores()
        self.threads = threads
        self.slots = self.depth = self.workers    # exactly the running cells are in flight
        self._pool = None

    def _stop(self, failed):
        if self._pool is not None:
            self._pool.shutdown(wait=not failed, cancel_futures=True)
            self._pool = None

    def _start(self):
        # 'spawn', not 'fork': a forked child would inherit numba's already started thread pool. The
        # children inherit os.environ at spawn time, and ProcessPoolExecutor spawns lazily on submit, so
        # every worker is started here, inside the environment, by one warm-up task per worker.
        ctx = multiprocessing.get_context("spawn")
        with _environ(worker_env(self.threads)):
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx)
            futures = [self._pool.submit(_warm, self.threads) for _ in range(self.workers)]
            cf.wait(futures)
        for f in futures:
            f.result()

    def submit(self, task):
        return self._pool.submit(run_cell, task)

    def restart(self):
        """A worker died (the pool is broken): start a fresh pool for the remaining cells."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._start()


class DaskBackend(Backend):
    """A ``dask.distributed`` client: to ``scheduler`` (an address), or to a LocalCluster of ``workers``
    processes with one thread each. Workers write run folders themselves, so the sweep folder must be on a
    filesystem every worker and the driver see at the same path; cells return only their summary record."""
    name = "dask"

    def __init__(self, scheduler=None, workers=None, threads=1):
        self.scheduler, self.workers, self.threads = scheduler, workers, threads
        self.cluster = self.client = None

    def _start(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("the dask backend needs dask.distributed: pip install 'onlinepg[dask]'") from None
        if self.scheduler:
            try:
                self.client = Client(self.scheduler)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"--scheduler: cannot reach the Dask scheduler at {self.scheduler}: {exc}") from None
            if self.workers:
                self.client.wait_for_workers(self.workers)
        else:
            # Worker processes inherit the thread settings from the start (the Nanny's env= alone is applied
            # after the child has re-imported __main__, which may import numba); env= covers restarts.
            with _environ(worker_env(self.threads)):
                self.cluster = LocalCluster(n_workers=self.workers or _cores(), threads_per_worker=1,
                                            processes=True, host="127.0.0.1", dashboard_address=None,
                                            env=worker_env(self.threads))
            self.client = Client(self.cluster)
        self._executor = self.client.get_executor(pure=False)
        self.client.run(_warm, self.threads)
        self.slots = max(1, sum(self.client.nthreads().values()))
        self.depth = 2 * self.slots         # a queued cell per slot hides the scheduler round trip

    def _stop(self, failed):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    def submit(self, task):
        return self._executor.submit(run_cell, task)

    def restart(self):  # pragma: no cover - Dask replaces dead workers itself
        pass


def make_backend(name, scheduler=None, workers=None, threads=1):
    """A backend object from its name (not started: use it as a context manager); a backend object as is."""
    if isinstance(name, Backend):
        return name
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}, got {name!r}")
    if scheduler and name != "dask":
        raise ConfigError("a scheduler address needs backend 'dask'")
    if name == "local":
        return LocalBackend(workers, threads)
    return DaskBackend(scheduler, workers, threads)


def failure(exc, note=""):
    """The record of a cell whose worker never returned one (a dead worker, a lost connection)."""
    return {"status": "failed", "summary": None, "host": None, "worker": None, "cell_seconds": None,
            "error_type": type(exc).__name__, "error_message": (note + str(exc)).strip(),
            "error_traceback": "".join(traceback.format_exception(exc)[-3:])}


def execute(backend, tasks, on_result, progress=True):
    """Run ``tasks`` on ``backend`` (entered), at most ``backend.depth`` in flight; ``on_result(task, record)``
    for each as it finishes. A cell that fails — or whose worker dies — is recorded; the others go on."""
    pending = list(reversed(tasks))
    inflight = {}
    bar = _Progress(len(tasks), backend.slots) if progress else None
    try:
        while pending or inflight:
            while pending and len(inflight) < backend.depth:
                task = pending.pop()
                try:
                    fut = backend.submit(task)
                except cf.process.BrokenProcessPool:
                    # a worker died and the pool broke before this cell was handed over: the cell waits for the
                    # new pool; the cells still in flight on the old one come back failed below, then it restarts
                    pending.append(task)
                    if inflight:
                        break
                    backend.restart()
                    continue
                inflight[fut] = task
            if bar is not None:
                bar.show(len(inflight))
            done, _ = cf.wait(inflight, timeout=1.0, return_when=cf.FIRST_COMPLETED)
            broken = False
            for fut in done:
                task = inflight.pop(fut)
                try:
                    rec = fut.result()
                except cf.process.BrokenProcessPool as exc:
                    broken = True
                    rec = failure(exc, "a worker process died while this cell was in flight (one of the cells "
                                       "in flight crashed it; --resume reruns them): ")
                except Exception as exc:
                    rec = failure(exc)
                on_result(task, rec)
                if bar is not None:
                    bar.finished(rec["status"] == "failed")
            if broken:
                backend.restart()
    finally:
        if bar is not None:
            bar.close()


class _Progress:
    """cells finished / failed / running and an ETA, on stderr (tqdm)."""

    def __init__(self, total, slots):
        from tqdm import tqdm
        self.slots, self.failed = slots, 0
        self.bar = tqdm(total=total, unit="cell", file=sys.stderr, dynamic_ncols=True, desc="sweep",
                        bar_format="{desc}: {n_fmt}/{total_fmt} cells done{postfix} | {elapsed} elapsed, "
                                   "ETA {remaining}")

    def finished(self, failed):
        self.failed += failed
        self.bar.update(1)       # the ETA is tqdm's: cells left / recent completion rate

    def show(self, inflight):
        self.bar.set_postfix_str(f"{self.failed} failed, {min(inflight, self.slots)} running", refresh=True)

    def close(self):
        self.bar.close()
