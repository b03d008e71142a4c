"""The algorithms as chunk runners: ``advance(first, n)`` plays rounds first … first+n−1 and returns the
decimated per-round trace rows. Per-round algorithms run inside one kernel call per chunk (the chunk driver of
their own round kernel, ``kernels.rounds``); batched algorithms (``pg_batch``, ``sgd`` with batch > 1) make a
handful of batched kernel calls per step, a step being one round of their trace.
"""
import math

import numpy as np

from . import kernels as K
from .kernels import rounds as R
from .kernels.codes import (BASELINES, C_MIST_EXPECTED, C_MIST_SAMPLED, C_ORM, C_PRM, C_ROUNDS, C_TOKENS,
                            C_UPDATES, LR_RULES, NCOUNT, NTRACE)
from .errors import RunError
from .seeds import derive_seed


class Learner:
    """State shared by every algorithm: the policy w (updated in place), the frozen base w0, the Adagrad
    accumulator and the cumulative counters (float64[7], see ``COUNTERS``)."""

    def __init__(self, cfg, stream, policy, base):
        self.cfg = cfg
        self.stream = stream
        self.policy = policy
        self.features = policy.features
        self.w0 = base.w.copy()
        self.G2 = np.zeros(self.features.D)
        self.counters = np.zeros(NCOUNT)
        self.seed = derive_seed(cfg.run.seed, "sampling")
        self.trace_every = cfg.run.trace_every

    def state(self):
        return {"w": self.policy.w, "G2": self.G2, "counters": self.counters}

    def restore(self, arrays):
        self.policy.w[:] = arrays["w"]
        self.G2[:] = arrays["G2"]
        self.counters[:] = arrays["counters"]

    def _rows(self, n):
        return np.empty((n // self.trace_every + 2, NTRACE))


class RoundLearner(Learner):
    """sgd (batch 1), pg, best_of_m, pg_process, perceptron: one kernel call per chunk."""

    def __init__(self, cfg, stream, policy, base):
        super().__init__(cfg, stream, policy, base)
        a = cfg.algo
        self.params = K.round_params(**{key: getattr(a, key) for key in R.PARAM_KEYS})

    @property
    def kind(self):
        """The round kernel this learner runs (a ``kernels.rounds.ROUNDS`` key)."""
        a = self.cfg.algo
        return R.round_kind(a.name, self.params, self.features.fm, a.variant)

    def advance(self, first, n):
        b = self.stream.batch(first, n)
        rows = self._rows(n)
        m = R.DRIVERS[self.kind](self.params, self.features.fm, self.policy.w, self.w0, self.G2, b.X, b.J,
                                 b.Ystar, first, self.seed, self.counters, self.trace_every, rows)
        return rows[:m]


class BatchLearner(Learner):
    """pg_batch (docs/theory.md §4.5, the paper's mode) and batched sgd: a step = B contexts, one update with the
    loss averaged over batch × N."""

    def __init__(self, cfg, stream, policy, base):
        super().__init__(cfg, stream, policy, base)
        a = cfg.algo
        self.B = a.batch
        self.G = a.group
        self.whole_batch = a.whole_batch
        self.rule = a.lr_rule
        self.lr = a.lr
        # the update's arguments, checked once (Policy.update checks them at every call)
        self._rule_code = LR_RULES[self.rule]
        self._G2_arg = self.G2 if self._rule_code == K.ADAGRAD else np.empty(0)
        self.supervised = a.name == "sgd"
        self.process = a.reward_type == "process"
        self.neg = -1.0 if a.reward == "pm1" else 0.0
        self.baseline = a.baseline
        self.std_scale = a.std_scale
        mode = "supervised" if self.supervised else a.reward_type
        self.fused = K.fused_supported(self.features.fm, mode, self.baseline)
        if self.fused:       # kernels/pg_step.py covers this step
            self.step_params = K.step_params(mode, a.reward, self.baseline, 1 if self.whole_batch else self.G,
                                             self.std_scale, 1.0 / (self.B * self.features.N))
            self.out = K.step_out(self.B, self.features.N)
            self.g = np.zeros(self.features.D)
        self.horizon = cfg.run.rounds       # the run's last step + 1: contexts may be read ahead up to it

    def _contexts(self, step):
        """B contexts for the step; with groups, B/G contexts each repeated G times (consecutive). The stream may
        read a few steps ahead, never past the run's horizon (an early stop wastes at most that read-ahead)."""
        n = self.B // self.G
        b = self.stream.batch(step * n, n, until=max(self.horizon, step + 1) * n)
        if self.G == 1:
            return b
        rep = lambda a: np.repeat(a, self.G, axis=0)  # noqa: E731
        return type(b)(rep(b.X), rep(b.J), rep(b.Ystar))

    def advantages(self, r):
        """Baseline and scaling of rewards r (float64[B] outcome, or float64[B, N] process, per position), by
        the kernel ``group_advantages``. Groups are the G consecutive samples of one context; 'batch_mean' and
        leave-one-out with G = 1 use the whole batch as one group."""
        if self.baseline == "none":
            return r
        B = r.shape[0]
        r2 = np.ascontiguousarray(r.reshape(B, -1), dtype=np.float64)
        adv = np.empty_like(r2)
        K.group_advantages(r2, B if self.whole_batch else self.G, BASELINES[self.baseline], bool(self.std_scale), adv)
        return adv.reshape(r.shape)

    def advance(self, first, n):
        rows = self._rows(n)
        m = 0
        for step in range(first, first + n):
            row = self.step(step)
            if step % self.trace_every == 0:
                rows[m] = row
                m += 1
        return rows[:m]

    def step(self, step):
        b = self._contexts(step)
        if self.fused:           # one kernel call samples, scores and accumulates the gradient
            out, g = self.out, self.g
            g[:] = 0.0
            self.features.kernel("pg_step", self.B)(self.features.fm, self.policy.w, b.X, b.Ystar, self.step_params,
                                                    self.seed, step * self.B, out, g)
            prefix, llstar, logp = out.prefix, out.llstar, out.logp
        else:
            prefix, llstar, logp, g = self._separate_kernels(step, b)
        return self._finish(step, b, g, prefix, llstar, logp)

    def _separate_kernels(self, step, b):
        """The step through the likelihood, sampling and gradient kernels (the maps and baselines ``pg_step`` does
        not cover). Returns (prefix lengths int64[B], log p(y*|x), log p(y|x), gradient)."""
        pol, B, N = self.policy, self.B, self.features.N
        llstar, _, _ = pol.loglik(b.X, b.J, b.Ystar)
        smp = pol.sample(b.X, b.J, "policy", seed=self.seed, first_stream=step * B)
        ok_tok = np.cumprod(smp.Y == b.Ystar, axis=1).astype(bool)      # prefix correctness r_i
        if self.supervised:
            g = pol.grad(b.X, b.J, b.Ystar, np.ones(B), scale=1.0 / (B * N))
        else:
            r = np.where(ok_tok if self.process else ok_tok[:, -1], 1.0, self.neg)
            g = pol.grad(b.X, b.J, smp.Y, self.advantages(r), scale=1.0 / (B * N), lse=smp.lse)
        return ok_tok.sum(axis=1), llstar, smp.logp, g

    def _finish(self, step, b, g, prefix, llstar, logp):
        """Count the step (from each row's leading tokens equal to y*), apply its update and return its trace
        row. The reward column is the mean reward: 1 for supervised steps, the mean prefix reward (process), the
        mean outcome reward (outcome)."""
        B, N, c = self.B, self.features.N, self.counters
        correct = prefix == N
        n_ok = int(correct.sum())
        c[C_MIST_EXPECTED] += float(np.sum(1.0 - np.exp(llstar)))
        c[C_MIST_SAMPLED] += float(B - n_ok)
        c[C_TOKENS] += B * N
        if self.supervised:
            reward = 1.0
        elif self.process:
            c[C_PRM] += B * N
            reward = float(prefix.sum()) / (B * N)
        else:
            c[C_ORM] += B
            reward = (n_ok + self.neg * (B - n_ok)) / B
        eta = gsq = 0.0
        if g.any():                 # the update's kernel computes ‖g‖² itself (in a fixed order)
            eta, gsq = K.apply_update(self._rule_code, self.policy.w, g, self.lr, self._G2_arg)
            if not math.isfinite(gsq):      # the run stops here: nothing written holds the non-finite weights
                raise RunError(f"step {step}: the gradient is not finite, so the weights are not either; lower "
                               "algo.lr (the run is saved up to its last checkpoint)")
            c[C_UPDATES] += 1
        c[C_ROUNDS] += 1
        return [step, b.J[0], reward, correct.mean(), c[C_ORM], c[C_PRM], c[C_TOKENS], c[C_UPDATES],
                c[C_MIST_SAMPLED], c[C_MIST_EXPECTED], llstar.mean(), logp.mean(), eta, np.sqrt(gsq)]


def make_learner(cfg, stream, policy, base):
    cls = BatchLearner if cfg.algo.batched else RoundLearner
    return cls(cfg, stream, policy, base)
