"""Tasks: who the contexts are, what the correct response is, and base models with a known likelihood.

* ``TeacherTask`` — the paper's bigram teacher (§2) with Rademacher or Gaussian-mixture contexts.
* ``CellsTask``   — M contexts with one-hot cell features and an exact margin γ = 1/√(M·N).
* ``ConstantTask`` — the constant-sequence family: M orthogonal context directions, correct responses
  (B, …, B) with B ∈ {0, 1}, context-only features, a head context and a light tail (a reconstruction).
* Base models: ``cells_base`` (prescribed likelihood α, β solved in closed form), ``staircase_base``,
  ``bottleneck_base``, and ``teacher_base`` (β found by bisection so the mean log-likelihood is log α).
* ``empirical_margin`` — the margin γ of an instance for a given w*.

Contexts are keyed by index: ``task.contexts(first, n)`` returns contexts ``first … first+n−1`` of the
task's stream, identical whatever the chunking.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from . import kernels as K
from . import validate as v
from .config import margin_contexts
from .features import FeatureSpec, pick
from .policy import Policy
from .seeds import derive_seed

CONTEXT_KINDS = ("rademacher", "mixture")


@dataclass
class Batch:
    """Contexts and their correct responses: X float64[B, d], J int64[B] (context id: mixture centre,
    cell index or stream index), Ystar int64[B, N]."""

    X: np.ndarray
    J: np.ndarray
    Ystar: np.ndarray


@dataclass
class TeacherTask:
    """The paper's teacher: W1* ∈ R^{k×d}, W2* ∈ R^{k×k} i.i.d. N(0, 1) drawn once from ``seed``;
    y*_1 = argmax(W1* x), y*_i = argmax(W1* x + W2*[:, y*_{i−1}]).

    contexts  'rademacher' (x ∈ {±1}^d) or 'mixture' (``centres`` centres at e_1..e_M, noise N(0, σ²I)
              clipped to norm ≤ σ, rescaled to ‖x‖ = √d; J holds the centre id).
    normalize scale the context *features* to ‖x‖ = 1/√2 and use the normalised bigram map (‖φ‖ ≤ 1).
              Every raw context has ‖x‖ = √d, so this is the constant factor ``context_scale`` = 1/√(2d).
              It changes features only: y*(x) is a property of the task, always computed from the raw x.
    """

    d: int
    k: int
    N: int
    contexts_kind: str = "rademacher"
    centres: int = 32
    sigma: float = 0.05
    seed: int = 0
    normalize: bool = False
    W1s: np.ndarray = field(init=False, repr=False)
    W2s: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.features = FeatureSpec("bigram", self.k, self.N, d=self.d, normalize=self.normalize)
        v.choice("task.contexts", self.contexts_kind, CONTEXT_KINDS)
        v.integer("task.seed", self.seed, *v.BOUNDS["seed"])
        if self.contexts_kind == "mixture":
            v.integer("task.centres", self.centres, 1, self.d)
            v.real("task.sigma", self.sigma, 0.0, open_lo=True)
        rng = np.random.default_rng(derive_seed(self.seed, "teacher"))
        self.W1s = rng.standard_normal((self.k, self.d))
        self.W2s = rng.standard_normal((self.k, self.k))
        self.context_scale = 1.0 / math.sqrt(2.0 * self.d) if self.normalize else 1.0

    def contexts(self, first, n, stream="contexts"):
        """Context features ``first … first+n−1`` of the named stream: (X float64[n, d], J int64[n])."""
        X, J = self._raw_contexts(first, n, stream)
        return self._features(X), J

    def _raw_contexts(self, first, n, stream):
        key = derive_seed(self.seed, stream)
        X = np.empty((n, self.d))
        if self.contexts_kind == "rademacher":
            pick(K, "rademacher_contexts", n, self.d)(key, first, X)
            J = np.arange(first, first + n, dtype=np.int64)
        else:
            J = np.empty(n, np.int64)
            # a normal (half a polar-method pair: ~22 ns measured) costs about 16 lanes of PG work (kernels/serial.py)
            pick(K, "mixture_contexts", n, 16 * self.d)(key, first, self.centres, self.sigma, X, J)
        return X, J

    def _features(self, X):
        if self.normalize:
            X *= self.context_scale
        return X

    def responses(self, X):
        """y*(x) for every row of X (float64[B, d], context *features* as ``contexts`` returns them) →
        int64[B, N]. With ``normalize`` the raw context is X / context_scale."""
        X = v.float_array("X", X, (None, self.d))
        return self._raw_responses(X / self.context_scale if self.normalize else X)

    def _raw_responses(self, X):
        Y = np.empty((len(X), self.N), np.int64)
        # a row: u = W1*·x (d·k multiply-adds, vectorised), an argmax of k per distinct previous token (at most
        # k + 1, memoised), O(1) per token: ~k·(d + k)/4 + N lanes of PG work
        lanes = self.k * (self.d + self.k) // 4 + self.N
        pick(K, "teacher_responses", len(X), lanes)(self.W1s, self.W2s, X, Y)
        return Y

    def draw(self, first, n, stream="contexts"):
        X, J = self._raw_contexts(first, n, stream)
        Ystar = self._raw_responses(X)       # y* from the raw context, before any feature scaling
        return Batch(self._features(X), J, Ystar)

    def centre_contexts(self):
        """The noiseless mixture centres e_c rescaled like the contexts (float64[M, d]), ids 0..M−1."""
        X = np.zeros((self.centres, self.d))
        X[np.arange(self.centres), np.arange(self.centres)] = math.sqrt(self.d)
        Ystar = self._raw_responses(X)
        return Batch(self._features(X), np.arange(self.centres, dtype=np.int64), Ystar)

    def star_weights(self):
        """The teacher as a policy in kernel layout, scaled to ‖w*‖ = 1 (its argmax path is y* on the
        features: the context block undoes ``context_scale``, the transition block the feature's tscale)."""
        w = np.concatenate([self.W1s.T.ravel() / self.context_scale, self.W2s.T.ravel() / self.features.tscale])
        return w / np.linalg.norm(w)


@dataclass
class CellsTask:
    """M contexts j, one-hot features per cell (j, i, a), y*_{j,i} uniform from ``seed``.

    w* = c·Σ_{j,i} e_{(j,i,y*_{j,i})} with c = 1/√(M·N) has ‖w*‖ = 1 and margin exactly γ = c. Give either
    ``M`` or ``gamma`` (then M = round(1/(N γ²)) and ``gamma`` is the exact c of that M).
    """

    k: int
    N: int
    M: int = 0
    gamma: float = 0.0
    seed: int = 0
    ystar: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        _check_k_N_seed(self.k, self.N, self.seed)
        self.M = _contexts_for_margin("cells", self.k, self.N, self.M, self.gamma, 1)
        self.gamma = 1.0 / math.sqrt(self.M * self.N)
        self.features = FeatureSpec("cells", self.k, self.N, M=self.M)
        rng = np.random.default_rng(derive_seed(self.seed, "cells"))
        self.ystar = rng.integers(0, self.k, size=(self.M, self.N)).astype(np.int64)

    def contexts(self, first, n, stream="contexts"):
        """Context ids drawn uniformly from {0..M−1}, keyed by index (X is empty: float64[n, 0])."""
        key = derive_seed(self.seed, stream)
        J = np.empty(n, np.int64)
        _uniform_ids(key, first, self.M, J)
        return np.zeros((n, 0)), J

    def responses(self, J):
        return self.ystar[np.asarray(J, dtype=np.int64)]

    def draw(self, first, n, stream="contexts"):
        X, J = self.contexts(first, n, stream)
        return Batch(X, J, self.responses(J))

    def all_contexts(self):
        """Every context once: ids 0..M−1."""
        J = np.arange(self.M, dtype=np.int64)
        return Batch(np.zeros((self.M, 0)), J, self.ystar)

    def star_weights(self):
        w = np.zeros((self.M, self.N, self.k))
        w[np.arange(self.M)[:, None], np.arange(self.N)[None, :], self.ystar] = self.gamma
        return w.ravel()


@dataclass
class ConstantTask:
    """The constant-sequence family (a reconstruction of the paper's pre-training lower bound).

    M orthogonal context directions x_j = e_j ∈ R^M (‖x‖ = 1); the correct response of context j is the constant
    sequence (B_j, …, B_j) with B_j ∈ {0, 1} uniform from ``seed`` — tokens 0 and 1 of our 0-based vocabulary are
    the paper's 1 and 2. Features are context-only, φ(x, y_<i, a) = x ⊗ e_a at every position (the bigram map
    without its transition block), so a linear policy plays one token distribution per context at all N
    positions and constant sequences are exactly what it can represent.

    Context distribution: context 0 is the *head*, of mass 1 − ``tail``; contexts 1 … M−1 are the *tail*, each
    of mass tail/(M−1). It is uniform over S = round((M−1)/tail) slots (the head holds S − M + 1 of them), so
    ``all_contexts()`` — every slot once — is the exact distribution and ``tail`` is rounded to (M−1)/S.

    Margin: w* puts c·(e_{B_j} − 𝟙/k) on row j of W1 (the max-margin direction of each row), c = √(k/((k−1)M)),
    so ‖w*‖ = 1 and every wrong token trails by exactly γ = c. Without pre-training, p(y*|x) = k^−N everywhere.
    """

    k: int
    N: int
    M: int = 0
    tail: float = 0.1
    gamma: float = 0.0
    seed: int = 0
    ystar: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        _check_k_N_seed(self.k, self.N, self.seed)
        self.tail = v.unit_open("task.tail", self.tail)
        self.M = _contexts_for_margin("constant", self.k, self.N, self.M, self.gamma, 2)
        self.gamma = math.sqrt(self.k / ((self.k - 1) * self.M))
        self.slots = max(self.M, int(round((self.M - 1) / self.tail)))
        self.tail = (self.M - 1) / self.slots
        head = self.slots - (self.M - 1)
        self.slot_context = np.concatenate([np.zeros(head, np.int64), np.arange(1, self.M, dtype=np.int64)])
        self.features = FeatureSpec("bigram", self.k, self.N, d=self.M, transition=False)
        rng = np.random.default_rng(derive_seed(self.seed, "constant"))
        self.bits = rng.integers(0, 2, size=self.M).astype(np.int64)
        self.ystar = np.repeat(self.bits[:, None], self.N, axis=1)

    @property
    def masses(self):
        """float64[M]: the probability of each context (head first)."""
        return np.bincount(self.slot_context, minlength=self.M) / self.slots

    def _batch(self, J):
        X = np.zeros((len(J), self.M))
        X[np.arange(len(J)), J] = 1.0
        return Batch(X, J, self.ystar[J])

    def contexts(self, first, n, stream="contexts"):
        """Contexts ``first … first+n−1`` of the named stream: (X float64[n, M] one-hot, J int64[n] ids)."""
        b = self.draw(first, n, stream)
        return b.X, b.J

    def responses(self, X):
        """y*(x) for one-hot context rows X (float64[B, M]) → int64[B, N]."""
        X = v.float_array("X", X, (None, self.M))
        return self.ystar[np.argmax(X, axis=1)]

    def draw(self, first, n, stream="contexts"):
        slots = np.empty(n, np.int64)
        _uniform_ids(derive_seed(self.seed, stream), first, self.slots, slots)
        return self._batch(self.slot_context[slots])

    def all_contexts(self):
        """Every slot once (S contexts): a test set whose mean is the exact expectation."""
        return self._batch(self.slot_context.copy())

    def star_weights(self):
        W1 = np.full((self.M, self.k), -self.gamma / self.k)
        W1[np.arange(self.M), self.bits] += self.gamma
        return np.concatenate([W1.ravel(), np.zeros(self.k * self.k)])


def _check_k_N_seed(k, N, seed):
    v.integer("task.k", k, *v.BOUNDS["k"])
    v.integer("task.N", N, *v.BOUNDS["N"])
    v.integer("task.seed", seed, *v.BOUNDS["seed"])


def _contexts_for_margin(kind, k, N, M, gamma, lo):
    """The number of contexts of a margin task (``config.margin_contexts``), its inputs checked: task.M if given
    (an integer ≥ lo), else task.gamma ∈ (0, 1)."""
    if M:
        v.integer("task.M", M, lo)
    else:
        v.unit_open("task.gamma", gamma)
    return margin_contexts(kind, k, N, M, gamma)


def _uniform_ids(key, first, M, out):
    """out[b] = uniform id in [0, M) from RNG stream first + b (a kernel call; no per-row Python)."""
    pick(K, "uniform_ids", len(out))(key, first, M, out)


# -- base models -------------------------------------------------------------------------------------

def beta_for_alpha(alpha, k, N, c):
    """β such that the policy β·w* has per-token probability p = α^{1/N} on the correct path, where w*
    puts weight c on every correct cell: p = e^{βc} / (e^{βc} + k − 1) ⇒ βc = log(p (k−1) / (1−p))."""
    alpha = v.unit_open("alpha", alpha)
    p = alpha ** (1.0 / N)
    return math.log(p * (k - 1) / (1.0 - p)) / c


def cells_base(task: CellsTask, alpha):
    """Base policy β·w* whose likelihood of y* is exactly α on every context."""
    beta = beta_for_alpha(alpha, task.k, task.N, task.gamma)
    return Policy(task.features, beta * task.star_weights())


def staircase_base(task: CellsTask, alphas, fractions):
    """Context groups with their own likelihoods: contexts are split into consecutive groups of sizes
    ∝ ``fractions``; group g gets β_g solving α_g. Returns (Policy, group int64[M]). The likelihood CDF —
    hence the LQ — is a step function with steps at α_g of heights ``fractions``."""
    alphas = [v.unit_open(f"alphas[{i}]", a) for i, a in enumerate(alphas)]
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (len(alphas),) or np.any(~np.isfinite(fr)) or np.any(fr <= 0):
        raise v.ConfigError("fractions must be positive numbers, one per entry of alphas")
    bounds = np.round(np.cumsum(fr / fr.sum()) * task.M).astype(int)
    group = np.searchsorted(bounds, np.arange(task.M), side="right").astype(np.int64)
    betas = np.array([beta_for_alpha(a, task.k, task.N, task.gamma) for a in alphas])
    w = task.star_weights().reshape(task.M, task.N, task.k) * betas[group][:, None, None]
    return Policy(task.features, w.ravel()), group


def bottleneck_base(task: CellsTask, alpha, position=0, easy=0.99):
    """Same sequence likelihood α, opposite token profile: every position but ``position`` has probability
    ``easy`` on the correct token, and ``position`` has α / easy^{N−1} (must lie in (0, 1))."""
    alpha = v.unit_open("alpha", alpha)
    position = v.integer("position", position, 0, task.N - 1)
    easy = v.unit_open("easy", easy)
    hard = alpha / easy ** (task.N - 1)
    if not 0.0 < hard < 1.0:
        raise v.ConfigError(f"alpha={alpha} with easy={easy} and N={task.N} needs a bottleneck probability "
                            f"alpha/easy^(N-1) = {hard:g} in (0, 1); raise easy or lower alpha")
    logit = lambda p: math.log(p * (task.k - 1) / (1.0 - p))  # noqa: E731  (score gap giving prob p)
    scale = np.full(task.N, logit(easy))
    scale[position] = logit(hard)
    w = np.zeros((task.M, task.N, task.k))
    w[np.arange(task.M)[:, None], np.arange(task.N)[None, :], task.ystar] = scale[None, :]
    return Policy(task.features, w.ravel())


def teacher_base(task: TeacherTask, alpha, batch: Batch, tol=1e-10):
    """β·w* (w* = the normalised teacher) with β chosen by bisection so that the mean log-likelihood of y*
    over ``batch`` equals log α (mean log p(y*|x) is increasing in β because y* is the argmax path)."""
    alpha = v.unit_open("alpha", alpha)
    star = Policy(task.features, task.star_weights())
    target = math.log(alpha)

    def mean_ll(beta):
        star.w = beta * task.star_weights()
        return float(star.loglik(batch.X, batch.J, batch.Ystar)[0].mean())

    if mean_ll(0.0) >= target:
        raise v.ConfigError(f"alpha={alpha} is at or below the uniform policy's likelihood k^-N; "
                            "choose alpha > k^-N")
    hi = 1.0
    while mean_ll(hi) < target:
        hi *= 2.0
        if hi > 1e12:
            raise v.ConfigError(f"alpha={alpha} is not reachable by scaling the teacher on this batch")
    lo = 0.0
    while hi - lo > tol * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean_ll(mid) < target else (lo, mid)
    return Policy(task.features, hi * task.star_weights())


def empirical_margin(features: FeatureSpec, w_star, batch: Batch):
    """γ̂ = min over contexts, positions and wrong tokens of ⟨w*, φ(y*_i) − φ(a)⟩ / (‖w*‖ · max‖φ‖)
    along the correct paths (docs/theory.md §2). Negative when w* does not rank y* first everywhere."""
    pol = Policy(features, w_star)
    nrm = float(np.linalg.norm(pol.w))
    if nrm == 0.0:
        raise v.ConfigError("w_star must be nonzero")
    gaps = pol.margin_gaps(batch.X, batch.J, batch.Ystar)
    return float(gaps.min()) / (nrm * features.max_feature_norm(batch.X))
