"""The linear autoregressive softmax policy p_w(y|x) = ∏_i softmax(⟨w, φ(x, y_<i, ·)⟩)[y_i].

A thin, validating wrapper over the batched kernels: every public method checks shapes, ranges and
finiteness (raising ``ConfigError``) and then makes one kernel call for the whole batch.
"""
from dataclasses import dataclass

import numpy as np

from . import kernels as K
from . import validate as v
from .features import FeatureSpec
from .kernels.codes import BEHAVIOURS, LR_RULES



@dataclass
class Samples:
    """A batch of sampled responses. Y int64[B, N]; logp, logq float64[B]; lse float64[B, N]."""

    Y: np.ndarray
    logp: np.ndarray
    logq: np.ndarray
    lse: np.ndarray


class Policy:
    """Weights ``w`` (float64[D]) of a feature map ``features``; w = 0 is the uniform policy."""

    def __init__(self, features: FeatureSpec, w=None):
        if not isinstance(features, FeatureSpec):
            raise v.ConfigError("features must be an onlinepg.FeatureSpec")
        self.features = features
        self.w = np.zeros(features.D) if w is None else v.float_array("w", w, (features.D,)).copy()

    # -- input checks shared by every method -------------------------------------------------------
    def _contexts(self, X, J):
        f = self.features
        if X is None and f.kind == "cells":
            J = v.int_array("J", J, (None,), 0, f.M - 1)
            X = np.zeros((len(J), 0))
        else:
            X = v.float_array("X", X, (None, f.context_dim))
        if J is None:
            if f.kind == "cells":
                raise v.ConfigError("J (context ids) is required for the 'cells' feature map")
            J = np.zeros(len(X), np.int64)
        else:
            hi = f.M - 1 if f.kind == "cells" else np.iinfo(np.int64).max
            J = v.int_array("J", J, (len(X),), 0, hi)
        return X, J

    def _responses(self, name, Y, B):
        return v.int_array(name, Y, (B, self.features.N), 0, self.features.k - 1)

    # -- kernels ------------------------------------------------------------------------------------
    def sample(self, X=None, J=None, behaviour="policy", *, eps=0.0, base=None, seed=0, first_stream=0):
        """Draw one response per context from ``behaviour`` ('policy', 'uniform', 'base', 'mixture' =
        ½base + ½uniform per sequence, 'eps_mixture' = (1−ε)p_w + ε·Unif per token). Row b uses RNG stream
        ``first_stream + b`` of ``seed``, so splitting a batch never changes its samples."""
        X, J = self._contexts(X, J)
        code = BEHAVIOURS[v.choice("behaviour", behaviour, tuple(BEHAVIOURS))]
        eps = v.real("eps", eps, 0.0, 1.0)
        if code in (K.BASE, K.MIXTURE):
            if base is None:
                raise v.ConfigError(f"behaviour {behaviour!r} needs a base policy (base=Policy or weights)")
            w0 = base.w if isinstance(base, Policy) else v.float_array("base", base, (self.features.D,))
        else:
            w0 = self.w
        seed = v.integer("seed", seed, *v.BOUNDS["seed"])
        first_stream = v.integer("first_stream", first_stream, 0, 2**63 - 1 - len(X))
        B, N = len(X), self.features.N
        states = np.empty((B, 4), np.uint64)
        K.seed_streams(seed, first_stream, states)
        out = Samples(np.empty((B, N), np.int64), np.empty(B), np.empty(B), np.empty((B, N)))
        self.features.kernel("sample_batch", B)(self.features.fm, self.w, w0, X, J, code, eps, states,
                                           out.Y, out.lse, out.logp, out.logq)
        return out

    def loglik(self, X=None, J=None, Y=None):
        """Exact scores of responses Y (int64[B, N]): returns (log p_w(Y|x) float64[B], min-token
        log-prob float64[B], per-token log-probs float64[B, N])."""
        X, J = self._contexts(X, J)
        Y = self._responses("Y", Y, len(X))
        B, N = Y.shape
        ll, mn, tok = np.empty(B), np.empty(B), np.empty((B, N))
        self.features.kernel("loglik_batch", B)(self.features.fm, self.w, X, J, Y, ll, mn, tok)
        return ll, mn, tok

    def scorer(self, X=None, J=None, Y=None):
        """A function w ↦ log p_w(Y|x) (float64[B], a new array per call) for a batch scored again and again
        (a run's test set and tracked contexts): the batch is checked once here, and each call is one
        ``loglik_batch`` call, the same as ``loglik``'s."""
        X, J = self._contexts(X, J)
        Y = self._responses("Y", Y, len(X))
        B, N = Y.shape
        fm, kernel = self.features.fm, self.features.kernel("loglik_batch", B)
        mn, tok = np.empty(B), np.empty((B, N))

        def score(w):
            ll = np.empty(B)
            kernel(fm, w, X, J, Y, ll, mn, tok)
            return ll
        return score

    def grad(self, X=None, J=None, Y=None, adv=None, *, scale=1.0, lse=None):
        """scale · Σ_b Σ_i adv[b, i] ∇_w log p_w(Y[b,i] | x_b, Y[b,<i]) as float64[D]. ``adv`` may be
        float64[B, N] (per token) or float64[B] (one advantage per sequence, broadcast)."""
        X, J = self._contexts(X, J)
        Y = self._responses("Y", Y, len(X))
        B, N = Y.shape
        adv = np.asarray(adv, dtype=np.float64)
        if adv.ndim == 1:
            adv = np.repeat(adv[:, None], N, axis=1) if adv.shape == (B,) else adv
        adv = v.float_array("adv", adv, (B, N))
        scale = v.real("scale", scale)
        have = lse is not None
        lse = v.float_array("lse", lse, (B, N)) if have else np.empty((B, N))
        g = np.zeros(self.features.D)
        self.features.kernel("grad_batch", B)(self.features.fm, self.w, X, J, Y, adv, lse, have, scale, g)
        return g

    def update(self, g, rule="adaptive", lr=0.1, adagrad_state=None):
        """w += η g under ``rule`` ('adaptive' η = 1/(4 + 2‖g‖²), 'constant' η = lr, 'adagrad'); returns
        (η, ‖g‖²). Adagrad needs ``adagrad_state`` (float64[D], updated in place)."""
        code = LR_RULES[v.choice("rule", rule, tuple(LR_RULES))]
        g = v.float_array("g", g, (self.features.D,))
        lr = v.real("lr", lr, 0.0, open_lo=True)
        if code == K.ADAGRAD:
            if adagrad_state is None or np.shape(adagrad_state) != (self.features.D,):
                raise v.ConfigError(f"adagrad_state must be a float64 array of shape ({self.features.D},)")
            G2 = adagrad_state
        else:
            G2 = np.empty(0)
        return K.apply_update(code, self.w, g, lr, G2)

    def margin_gaps(self, X=None, J=None, Ystar=None):
        """Per context, the smallest score gap of w along the correct path Ystar (float64[B])."""
        X, J = self._contexts(X, J)
        Ystar = self._responses("Ystar", Ystar, len(X))
        gaps = np.empty(len(X))
        self.features.kernel("margin_batch", len(X))(self.features.fm, self.w, X, J, Ystar, gaps)
        return gaps

    # -- paper layouts ------------------------------------------------------------------------------
    @property
    def W1(self):
        """bigram: the paper's W1 as (k, d) (a copy)."""
        f = self.features
        return self.w[: f.d * f.k].reshape(f.d, f.k).T.copy()

    @property
    def W2(self):
        """bigram: the paper's W2 as (k, k) indexed [a, prev] (a copy)."""
        f = self.features
        return self.w[f.d * f.k:].reshape(f.k, f.k).T.copy()
