"""Custom feature maps: every sequence and batch kernel, rebuilt around a user's ``@njit`` φ.

The user supplies ``phi(x, y, i, a, out)`` — write φ(x, y_<i, a) (float64[D]) into ``out`` for context row
``x`` (float64[d]), prefix ``y[:i]`` (int64[N]; later entries must not be read), position ``i`` and token
``a`` — and the dimension D. ``custom_kernels(phi, D)`` returns a namespace with the same kernels as the
built-in maps (``sample_sequence``, ``sequence_loglik``, ``accumulate_grad``, ``correct_path_gap``,
``sample_batch``, ``loglik_batch``, ``grad_batch``, ``margin_batch``, the batched steps ``separate_step`` and
``grpo_step`` and their drivers ``run_steps_separate[_serial]``, ``run_steps_grpo[_serial]``) with identical
signatures; pass
``fm = FeatureMap(CUSTOM, k, N, 1.0)``.

The kernels are not written twice: their compiled-once Python bodies are re-bound to a globals table in which
the four feature primitives are the dense-φ versions below. This path costs O(k·D) per token and is not
cached on disk (Numba cannot cache a function closing over another dispatcher); it is meant for embedding
and for checking new feature maps, not for speed.
"""
import types

import numba
import numpy as np
from numba import njit

from . import batch, sequence
from .steps import driver as step_drivers, grpo, separate

_REBOUND = ("sample_sequence", "sequence_loglik", "accumulate_grad", "correct_path_gap", "prefix_entropy",
            "sample_batch", "loglik_batch", "entropy_batch", "grad_batch", "margin_batch", "score_and_draw",
            "grpo_sequence_grad", "separate_step", "grpo_step")


def _dense_primitives(phi, D):
    @njit
    def prepare(fm, w, x, j, u):
        pass

    @njit
    def token_logits(fm, w, x, j, u, y, i, out):
        f = np.empty(D)
        for a in range(fm.k):
            phi(x, y, i, a, f)
            s = 0.0
            for t in range(D):
                s += w[t] * f[t]
            out[a] = s

    @njit
    def token_grad(fm, x, j, y, i, coef, cu, g):
        f = np.empty(D)
        for a in range(fm.k):
            if coef[a] != 0.0:
                phi(x, y, i, a, f)
                for t in range(D):
                    g[t] += coef[a] * f[t]

    @njit
    def finish_grad(fm, x, j, cu, g):
        pass

    return {"prepare": prepare, "token_logits": token_logits, "token_grad": token_grad,
            "finish_grad": finish_grad}


def custom_kernels(phi, D):
    """Kernels for the feature map ``phi`` of dimension ``D`` (see module docstring)."""
    if not hasattr(phi, "py_func") and not numba.config.DISABLE_JIT:
        raise TypeError("custom_kernels: phi must be a numba @njit function phi(x, y, i, a, out)")
    D = int(D)
    if D < 1:
        raise ValueError(f"custom_kernels: D must be an integer >= 1, got {D}")
    table = dict(vars(sequence))
    table.update(vars(batch))
    table.update(vars(separate))
    table.update(vars(grpo))
    table.update(_dense_primitives(phi, D))
    for name in _REBOUND:
        src = table[name]
        py = getattr(src, "py_func", src)                 # a plain function under NUMBA_DISABLE_JIT=1
        fn = types.FunctionType(py.__code__, table, name, py.__defaults__)
        opts = {key: val for key, val in getattr(src, "targetoptions", {}).items()
                if key not in ("cache", "nopython", "parallel")}
        table[name] = njit(**opts, parallel=bool(getattr(src, "targetoptions", {}).get("parallel")))(fn)
        table[name + "_serial"] = njit(**opts)(types.FunctionType(py.__code__, table, name, py.__defaults__))
    names = [n for n in table if n in _REBOUND or n[: -len("_serial")] in _REBOUND]
    drivers = {f"run_steps_{kind}{tail}": step_drivers.step_driver(table[f"{kind}_step{tail}"],
                                                                   f"run_steps_{kind}{tail}", cache=False)
               for kind in ("separate", "grpo") for tail in ("", "_serial")}
    return types.SimpleNamespace(**{name: table[name] for name in names}, **drivers, D=D, phi=phi)
