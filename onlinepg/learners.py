"""The algorithms as chunk runners: ``advance(first, n)`` plays rounds first … first+n−1 and returns the
decimated per-round trace rows. Per-round algorithms run inside one kernel call per chunk (the chunk driver of
their own round kernel, ``kernels.rounds``); batched algorithms (``pg_batch``, ``sgd`` with batch > 1) run inside
one call of their step driver per chunk (``kernels.steps``), a step being one round of their trace.
"""
import numpy as np

from . import kernels as K
from .kernels import rounds as R
from .kernels.codes import LR_RULES, NCOUNT, NTRACE
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
    """pg_batch (docs/theory.md §4.5, the paper's mode), the GRPO family (§4.9) and batched sgd: a step = B contexts, one update with the
    loss averaged over batch × N. One step-driver call per run of steps whose contexts hold up to ``CALL_CELLS``
    numbers (``kernels.steps``: the step kernel ``kind`` from its table, the update, counting and trace rows)."""

    CALL_CELLS = 1 << 22        # numbers of X and y* per driver call (32 MB): drawn before the call

    def __init__(self, cfg, stream, policy, base):
        super().__init__(cfg, stream, policy, base)
        a = cfg.algo
        self.B = a.batch
        self.G = a.group
        N = self.features.N
        mode = "supervised" if a.name == "sgd" else a.reward_type
        self.kind = K.step_kind(self.features.fm, mode, a.baseline, a.name)
        if a.name == "grpo":        # docs/theory.md §4.9: one per-token weight for every loss type (see loss_length)
            self.params = K.step_params(mode, a.reward, "none", self.G, False, 1.0 / (self.B * (a.loss_length or N)),
                                        kernel=self.kind, iterations=a.num_iterations, estimator=a.adv_estimator,
                                        scale_rewards=a.scale_rewards, epsilon=a.epsilon,
                                        epsilon_high=a.clip_high, beta=a.beta,
                                        entropy_coeff=a.entropy_coeff, pass_k=a.pkpo_k)
        else:
            self.params = K.step_params(mode, a.reward, a.baseline, 1 if a.whole_batch else self.G, a.std_scale,
                                        1.0 / (self.B * N), kernel=self.kind)
        self.rule = LR_RULES[a.lr_rule]
        self.lr = float(a.lr)
        self.out = K.step_out(self.B, N)
        self.g = np.zeros(self.features.D)
        self.driver = self.features.kernel("run_steps_" + self.kind, self.B)
        self.steps_per_call = max(1, self.CALL_CELLS // (self.B * (cfg.task.context_dim + N)))
        self.horizon = cfg.run.rounds       # the run's last step + 1: contexts may be read ahead up to it

    def _contexts(self, step, n_steps):
        """The B contexts of each of steps step … step+n_steps−1, in order; with groups, B/G contexts per step,
        each repeated G times (consecutive). The stream may read a few steps ahead, never past the run's horizon
        (an early stop wastes at most that read-ahead)."""
        n = self.B // self.G
        b = self.stream.batch(step * n, n_steps * n, until=max(self.horizon, step + n_steps) * n)
        if self.G == 1:
            return b
        rep = lambda a: np.repeat(a, self.G, axis=0)  # noqa: E731
        return type(b)(rep(b.X), rep(b.J), rep(b.Ystar))

    def advantages(self, r):
        """The advantages the step gives rewards r (float64[B] outcome, or float64[B, N] process, per position):
        the kernel ``baseline_advantages`` with this learner's scope. Groups are the G consecutive samples of one
        context; 'batch_mean' and leave-one-out with G = 1 use the whole batch as one group. (The fused step
        computes the same advantages from the two reward counts: ``binary_advantages``.)"""
        r2 = np.ascontiguousarray(np.reshape(r, (len(r), -1)), dtype=np.float64)
        adv = np.empty_like(r2)
        K.baseline_advantages(r2, self.params, adv)
        return adv.reshape(np.shape(r))

    def advance(self, first, n):
        rows = self._rows(n)
        m = 0
        for lo in range(first, first + n, self.steps_per_call):
            S = min(self.steps_per_call, first + n - lo)
            b = self._contexts(lo, S)
            done, r = self.driver(self.params, self.rule, self.lr, self.features.fm, self.policy.w, self.w0, self.G2,
                                  b.X, b.J, b.Ystar, lo, self.seed, self.counters, self.trace_every, rows[m:],
                                  self.out, self.g)
            m += r
            if done < S:        # the run stops here: nothing written holds the non-finite weights
                raise RunError(f"step {lo + done}: the gradient is not finite, so the weights are not either; lower "
                               "algo.lr (the run is saved up to its last checkpoint)")
        return rows[:m]


def make_learner(cfg, stream, policy, base):
    cls = BatchLearner if cfg.algo.batched else RoundLearner
    return cls(cfg, stream, policy, base)
