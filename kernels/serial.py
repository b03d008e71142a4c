"""Serial twins of the ``prange`` kernels.

Waking Numba's thread pool costs more than the whole job for a few dozen short sequences (and much more on
a loaded machine), so every parallel batch kernel also exists as ``<name>_serial``: the same code object
compiled with ``parallel=False`` under its own name, hence its own on-disk cache entry. Callers pick the
twin below ``PARALLEL_MIN_ROWS`` rows or ``PARALLEL_MIN_LANES`` units of inner-loop work (rows × the lanes
of a row, e.g. N·k for a sequence); both give bit-identical results (fixed-block reductions).

The work threshold matters most on a busy machine: a parallel region waits for its slowest thread, and a thread
that another process has descheduled costs a scheduler time slice. Measured on 2 cores with two other processes
running: the default job's step (256 sequences of N = k = 16, 65 536 lanes) took 72 ms on two threads and 1.3 ms
on one.
"""
import types

from numba import njit

PARALLEL_MIN_ROWS = 128
PARALLEL_MIN_LANES = 1 << 20


def serial_twin(dispatcher):
    py = getattr(dispatcher, "py_func", dispatcher)     # a plain function under NUMBA_DISABLE_JIT=1
    name = py.__name__ + "_serial"
    fn = types.FunctionType(py.__code__, py.__globals__, name, py.__defaults__, py.__closure__)
    fn.__qualname__ = name
    fn.__doc__ = f"Serial twin of ``{py.__name__}`` (same code, no thread pool)."
    opts = {k: v for k, v in getattr(dispatcher, "targetoptions", {}).items() if k not in ("parallel", "nopython")}
    # `cache=True` is not a target option (the dispatcher holds it), so ask for it explicitly
    cached = type(getattr(dispatcher, "_cache", None)).__name__ == "FunctionCache"
    return njit(cache=cached, **opts)(fn)
