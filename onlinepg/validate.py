"""Edge validation: every public entry point checks its input here before any kernel runs.

Kernels assume valid input; these helpers turn anything else into one ``ConfigError`` naming the field and
the accepted range, never a Numba typing traceback.
"""
import numbers

import numpy as np

from .errors import ConfigError

# Every integer a kernel, a trace column or a saved array holds is an int64; Python (and TOML) integers are not
# bounded, so a value outside this range is refused at the edge instead of overflowing (or looping) later.
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1


# The bounds of the quantities every layer checks (config keys, tasks, feature maps built from Python): one table.
BOUNDS = {"k": (2, None), "N": (1, None), "seed": (0, 2**63 - 1)}


def outside(value, lo=None, hi=None, open_lo=False, open_hi=False):
    """True if ``value`` lies outside the interval from lo to hi (either end optional; closed unless open_lo /
    open_hi): the one interval test behind every check — config keys (``config.Key.check``), the API's
    ``integer`` and ``real`` arguments, experiment parameters."""
    return bool((lo is not None and (value < lo or (open_lo and value == lo)))
                or (hi is not None and (value > hi or (open_hi and value == hi))))


def in_int64(value):
    """True if the integer ``value`` fits int64 (TOML and Python integers can exceed it; no kernel can)."""
    return INT64_MIN <= value <= INT64_MAX


def integer(name, value, lo=None, hi=None):
    """An int in [lo, hi] (either bound optional), and always within int64."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer{_range(lo, hi)}, got {value!r}")
    value = int(value)
    if outside(value, lo, hi):
        raise ConfigError(f"{name} must be an integer{_range(lo, hi)}, got {value}")
    if not in_int64(value):
        lo, hi = INT64_MIN if lo is None else lo, INT64_MAX if hi is None else hi
        raise ConfigError(f"{name} must be an integer{_range(lo, hi)}, got {value}")
    return value


def int_text(v):
    """An integer bound as people read it: 2^63 - 1, not 9223372036854775807 (nor 9.22337e+18, which is not
    the bound)."""
    for k in range(32, 64):
        if v in (2**k, 2**k - 1, -2**k):
            return ("-" if v < 0 else "") + f"2^{k}" + (" - 1" if v == 2**k - 1 else "")
    return str(v)


def real(name, value, lo=None, hi=None, open_lo=False, open_hi=False):
    """A finite float in the interval given by lo/hi (closed unless open_lo/open_hi)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ConfigError(f"{name} must be a finite number{_interval(lo, hi, open_lo, open_hi)}, got {value!r}")
    value = float(value)
    if outside(value, lo, hi, open_lo, open_hi):
        raise ConfigError(f"{name} must be in {_interval(lo, hi, open_lo, open_hi).strip()}, got {value}")
    return value


def unit_open(name, value):
    """A probability strictly inside (0, 1) — used for γ, α, ε."""
    return real(name, value, 0.0, 1.0, open_lo=True, open_hi=True)


def choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def float_array(name, value, shape):
    """A finite float64 C-contiguous array of the given shape (None entries match any size)."""
    try:
        arr = np.ascontiguousarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a numeric array of shape {_shape(shape)}: {exc}") from None
    _check_shape(name, arr, shape)
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} must contain only finite values (found NaN or inf)")
    return arr


def int_array(name, value, shape, lo, hi):
    """An int64 C-contiguous array of the given shape with entries in [lo, hi]."""
    arr = np.asarray(value)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"{name} must be an integer array with entries in [{lo}, {hi}], got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    _check_shape(name, arr, shape)
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ConfigError(f"{name} entries must be in [{lo}, {hi}], got range [{arr.min()}, {arr.max()}]")
    return arr


def _check_shape(name, arr, shape):
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok:
        raise ConfigError(f"{name} must have shape {_shape(shape)}, got {arr.shape}")


def _shape(shape):
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _range(lo, hi):
    if lo is not None and hi is not None:
        return f" in [{int_text(lo)}, {int_text(hi)}]"
    if lo is not None:
        return f" >= {int_text(lo)}"
    if hi is not None:
        return f" <= {int_text(hi)}"
    return ""


def _interval(lo, hi, open_lo, open_hi):
    if lo is None and hi is None:
        return ""
    left = ("(" if open_lo else "[") + ("-inf" if lo is None else f"{lo:g}")
    right = ("inf" if hi is None else f"{hi:g}") + (")" if open_hi else "]")
    return f" in {left}, {right}"
