"""Compile-ahead: a run's evaluation kernels compiled in a helper process while the run compiles the rest.

``ahead(features, rows)`` starts the helper (``python -m onlinepg.compile_ahead``) unless the Numba cache already
holds the kernels; the engine calls it and waits on the returned ``Ahead`` before its first evaluation. The
warm-up tour (every kernel, ``onlinepg warmup``) is ``onlinepg.warmup``.
"""
_SPEC_FIELDS = ("kind", "k", "N", "d", "M", "normalize", "transition")


class Ahead:
    """A helper process compiling the kernels of a run's evaluations (``ahead``); ``wait()`` before calling them."""

    def __init__(self, proc=None):
        self.proc = proc

    def wait(self, timeout=300):
        """Return once the helper has exited (at once without one). A helper that failed or hangs costs nothing
        but the wait: the run then compiles the kernels itself."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except Exception:       # noqa: BLE001 - a stuck helper must never stop the run
                self.proc.kill()
            self.proc = None


def _eval_call(features, rows, name):
    """(kernel, args) of the call a run's evaluations make of kernel ``name`` (a name in the map's namespace:
    ``loglik_batch[_serial]`` as ``Policy.scorer`` calls it, ``entropy_batch``, ``sample_batch[_serial]`` as the
    evaluator's entropies call them) for ``rows`` rows of zeros: the same kernel and argument types."""
    import numpy as np
    from .kernels.codes import POLICY
    from .policy import Policy
    w = Policy(features).w
    X, J = np.zeros((rows, features.context_dim)), np.zeros(rows, np.int64)
    Y = np.zeros((rows, features.N), np.int64)
    kernel = getattr(features.kernels, name)
    if name.startswith("loglik_batch"):
        return kernel, (features.fm, w, X, J, Y, np.empty(rows), np.empty(rows), np.empty((rows, features.N)))
    if name.startswith("entropy_batch"):
        return kernel, (features.fm, w, X, J, Y, np.empty(rows))
    states = np.zeros((rows, 4), np.uint64)
    return kernel, (features.fm, w, w, X, J, POLICY, 0.0, states, Y, np.empty((rows, features.N)), np.empty(rows),
                    np.empty(rows))


def _eval_kernels(features, rows, entropy_rows):
    """{kernel name: rows} of the kernels a run's evaluations call: the scorer's ``loglik_batch`` twin for each row
    count in ``rows``, and, for ``entropy_rows`` > 0 contexts, ``entropy_batch`` (parallel at any size, as the
    evaluator calls it) and the ``sample_batch`` twin of the sampled entropy."""
    names = {}
    for n in sorted({int(r) for r in rows if r}):
        names.setdefault(features.kernel("loglik_batch", n).py_func.__name__, n)
    if entropy_rows:
        names.setdefault("entropy_batch", entropy_rows)
        names.setdefault(features.kernel("sample_batch", entropy_rows).py_func.__name__, entropy_rows)
    return names


def _cached(kernel, args):
    """True if the Numba cache holds ``kernel`` for these argument types (False when unsure)."""
    try:
        from numba import typeof
        sig = tuple(typeof(a) for a in args)
        cache = kernel._cache
        return cache._index_key(sig, kernel.targetctx.codegen()) in cache._cache_file._load_index()
    except Exception:       # noqa: BLE001 - private Numba API: unsure means "not cached"
        return False


def ahead(features, rows, entropy_rows=0):
    """Start compiling, in a helper process, the kernels a run's evaluations will call — ``loglik_batch`` for
    ``rows`` (the test set's and the tracked contexts' row counts) and the entropies' kernels for ``entropy_rows``
    contexts (``_eval_kernels``) — unless the Numba cache already holds them.

    Numba compiles on one core, and a cold first run spends about a third of its compile time on these kernels
    (the default job: 6 of 19 s); the helper compiles them on the other core while the run compiles its context,
    teacher and step kernels, and the run then loads them from the cache. Only for the 'bigram' and 'cells' maps
    (a 'custom' map's kernels are built from a user function the helper cannot import); never under
    NUMBA_DISABLE_JIT. The helper writes nothing but the cache. Returns an ``Ahead``.
    """
    import json
    import subprocess
    import sys
    from numba import config
    if config.DISABLE_JIT or features.kind == "custom":
        return Ahead()
    todo = {}                           # kernel name → rows: one call per kernel (the argument types are the same)
    for name, n in _eval_kernels(features, rows, entropy_rows).items():
        if not _cached(*_eval_call(features, n, name)):   # told by name: the run's choice of twin stands
            todo[name] = n
    if not todo:
        return Ahead()
    spec = {f: getattr(features, f) for f in _SPEC_FIELDS}
    try:
        job = json.dumps({"spec": spec, "calls": todo})
        proc = subprocess.Popen([sys.executable, "-m", "onlinepg.compile_ahead", job], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return Ahead()
    return Ahead(proc)


def _ahead_main(arg):
    import json
    from .features import FeatureSpec
    job = json.loads(arg)
    features = FeatureSpec(**job["spec"])
    for name, n in job["calls"].items():
        kernel, args = _eval_call(features, n, name)
        kernel(*args)


if __name__ == "__main__":
    import sys
    _ahead_main(sys.argv[1])
