"""Feature-map specifications: the Python-side description of φ that picks and feeds the kernels."""
import math
from dataclasses import dataclass, field
from functools import cached_property

from . import kernels as K
from . import validate as v

KINDS = ("bigram", "cells", "custom")


def pick(namespace, name, rows, lanes_per_row=None):
    """Kernel ``name`` from ``namespace`` for a batch of ``rows``: its serial twin below
    ``kernels.PARALLEL_MIN_ROWS`` rows or (given the inner-loop lanes of one row) ``kernels.PARALLEL_MIN_LANES``
    lanes in all, where waking the thread pool costs more than the work (kernels/serial.py)."""
    parallel = rows >= K.PARALLEL_MIN_ROWS and (lanes_per_row is None
                                                 or rows * lanes_per_row >= K.PARALLEL_MIN_LANES)
    return getattr(namespace, name if parallel else name + "_serial")
_CODES = {"bigram": K.BIGRAM, "cells": K.CELLS, "custom": K.CUSTOM}


@dataclass(frozen=True)
class FeatureSpec:
    """A feature map φ(x, y_<i, a) ∈ R^D over a vocabulary of ``k`` tokens and responses of ``N`` tokens.

    kind       'bigram' (contexts x ∈ R^d, D = d·k + k²), 'cells' (contexts are ids j < M, D = M·N·k) or
               'custom' (a user @njit ``phi(x, y, i, a, out)`` of dimension ``D``, contexts x ∈ R^d).
    normalize  bigram only: the transition feature takes value 1/√2 instead of 1, and tasks scale contexts
               to ‖x‖ = 1/√2, so ‖φ‖ ≤ 1 as the theory assumes. Raw (False) is the paper's experiments.
    transition bigram only: False drops the transition feature (its value is 0, so the k² block never moves):
               φ(x, y_<i, a) = x ⊗ e_a at every position, the context-only map of the constant-sequence family
               (``tasks.ConstantTask``), under which a linear policy plays the same token distribution everywhere.
    """

    kind: str
    k: int
    N: int
    d: int = 0
    M: int = 0
    normalize: bool = False
    transition: bool = True
    D_custom: int = 0
    phi: object = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        v.choice("features.kind", self.kind, KINDS)
        v.integer("features.k", self.k, *v.BOUNDS["k"])
        v.integer("features.N", self.N, *v.BOUNDS["N"])
        if self.kind in ("bigram", "custom"):
            v.integer("features.d", self.d, 1)
        if self.kind == "cells":
            v.integer("features.M", self.M, 1)
        if self.kind == "custom":
            v.integer("features.D_custom", self.D_custom, 1)
            if not hasattr(self.phi, "py_func"):
                raise v.ConfigError("features.phi must be a numba @njit function phi(x, y, i, a, out) "
                                    "for kind 'custom'")
        if not isinstance(self.normalize, bool):
            raise v.ConfigError(f"features.normalize must be true or false, got {self.normalize!r}")
        if not isinstance(self.transition, bool) or (not self.transition and self.kind != "bigram"):
            raise v.ConfigError(f"features.transition must be true, or false for the 'bigram' map, got "
                                f"{self.transition!r} for {self.kind!r}")

    @property
    def tscale(self):
        """Value of the bigram transition feature (0 without the transition block)."""
        if not self.transition:
            return 0.0
        return 1.0 / math.sqrt(2.0) if self.normalize else 1.0

    @property
    def fm(self):
        """The kernel-side tuple (kind, k, N, tscale)."""
        return K.FeatureMap(_CODES[self.kind], self.k, self.N, self.tscale)

    @property
    def D(self):
        if self.kind == "bigram":
            return self.d * self.k + self.k * self.k
        if self.kind == "cells":
            return self.M * self.N * self.k
        return self.D_custom

    @property
    def context_dim(self):
        """Width of the context rows X (0 for cells, whose contexts are the ids J)."""
        return 0 if self.kind == "cells" else self.d

    def kernel(self, name, rows):
        """The batch kernel ``name`` (e.g. 'sample_batch') for this map, sized for ``rows`` rows of N·k lanes."""
        return pick(self.kernels, name, rows, self.N * self.k)

    @cached_property
    def kernels(self):
        """Namespace with sample_batch, loglik_batch, grad_batch, margin_batch, … for this map."""
        if self.kind == "custom":
            return K.custom_kernels(self.phi, self.D_custom)
        return K

    def max_feature_norm(self, X):
        """max over contexts, prefixes and tokens of ‖φ‖ (bigram and cells)."""
        if self.kind == "cells":
            return 1.0
        if self.kind == "bigram":
            x2 = float((X * X).sum(axis=1).max()) if len(X) else 0.0
            return math.sqrt(x2 + (self.tscale ** 2 if self.N > 1 else 0.0))
        raise v.ConfigError("max_feature_norm is defined for 'bigram' and 'cells' feature maps only")
