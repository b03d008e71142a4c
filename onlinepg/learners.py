"""The algorithms as chunk runners: ``advance(first, n)`` plays rounds first … first+n−1 and returns the
decimated per-round trace rows. Per-round algorithms run inside one kernel call per chunk
(``kernels.online.run_rounds``); batched algorithms (``pg_batch``, ``sgd`` with batch > 1) make a handful of
batched kernel calls per step, a step being one round of their trace.
"""
import numpy as np

from . import kernels as K
from .build import BEHAVIOUR_CODES, rule_code
from .seeds import derive_seed

O = K.online
TRACE_COLUMNS = ("round", "context_id", "reward", "correct", "orm_queries", "prm_queries", "tokens_sampled",
                 "updates", "mistakes_sampled", "mistakes_expected", "loglik_star", "sampled_logprob", "lr",
                 "grad_norm")
INT_COLUMNS = {"round", "context_id", "orm_queries", "prm_queries", "tokens_sampled", "updates",
               "mistakes_sampled"}
TRACE_SCHEMA = {c: (np.int64 if c in INT_COLUMNS else np.float64) for c in TRACE_COLUMNS}
COUNTERS = ("rounds", "updates", "orm_queries", "prm_queries", "tokens_sampled", "mistakes_sampled",
            "mistakes_expected")
_ALGO_CODES = {"sgd": O.SGD, "pg": O.PG, "best_of_m": O.BEST_OF_M, "pg_process": O.PG_PROCESS,
               "perceptron": O.PERCEPTRON}
_VARIANTS = {"explore": O.EXPLORE, "binary_search": O.BINARY_SEARCH, "on_policy": O.ON_POLICY_PRM}
_BASELINES = {"none": O.NO_BASELINE, "batch_mean": O.GROUP_MEAN, "group_mean": O.GROUP_MEAN,
              "loo": O.LEAVE_ONE_OUT}


def is_batched(cfg):
    a = cfg["algo"]
    return a["name"] == "pg_batch" or (a["name"] == "sgd" and a["batch"] > 1)


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
        self.counters = np.zeros(O.NCOUNT)
        self.seed = derive_seed(cfg["run"]["seed"], "sampling")
        self.trace_every = cfg["run"]["trace_every"]

    def state(self):
        return {"w": self.policy.w, "G2": self.G2, "counters": self.counters}

    def restore(self, arrays):
        self.policy.w[:] = arrays["w"]
        self.G2[:] = arrays["G2"]
        self.counters[:] = arrays["counters"]

    def _rows(self, n):
        return np.empty((n // self.trace_every + 2, O.NTRACE))


class RoundLearner(Learner):
    """sgd (batch 1), pg, best_of_m, pg_process, perceptron: one kernel call per chunk."""

    def __init__(self, cfg, stream, policy, base):
        super().__init__(cfg, stream, policy, base)
        a = cfg["algo"]
        ip = np.zeros(O.N_IP, np.int64)
        ip[O.IP_ALGO] = _ALGO_CODES[a["name"]]
        ip[O.IP_BEHAVIOUR] = BEHAVIOUR_CODES[a["behaviour"]]
        ip[O.IP_PM1] = a["reward"] == "pm1"
        ip[O.IP_BASELINE] = _BASELINES[a["baseline"]]
        ip[O.IP_G] = a["group_size"]
        ip[O.IP_M] = a["m"]
        ip[O.IP_MTOK] = a["m_tok"]
        ip[O.IP_VARIANT] = _VARIANTS[a["variant"]]
        ip[O.IP_RULE] = rule_code(a["lr_rule"])
        ip[O.IP_STD] = a["std_scale"]
        fp = np.zeros(O.N_FP)
        fp[O.FP_LR] = a["lr"]
        fp[O.FP_EPS] = a["eps"]
        fp[O.FP_ZETA] = a["iw_clip"]
        self.ip, self.fp = ip, fp

    def advance(self, first, n):
        b = self.stream.batch(first, n)
        rows = self._rows(n)
        m = O.run_rounds(self.ip, self.fp, self.features.fm, self.policy.w, self.w0, self.G2, b.X, b.J,
                         b.Ystar, first, self.seed, self.counters, self.trace_every, rows)
        return rows[:m]


class BatchLearner(Learner):
    """pg_batch (docs/theory.md §4.5, the paper's mode) and batched sgd: a step = B contexts, one update with the
    loss averaged over batch × N."""

    def __init__(self, cfg, stream, policy, base):
        super().__init__(cfg, stream, policy, base)
        a = cfg["algo"]
        self.B = a["batch"]
        self.G = a["group_size"] if a["baseline"] in ("group_mean", "loo") else 1
        self.rule = a["lr_rule"]
        self.lr = a["lr"]
        self.supervised = a["name"] == "sgd"
        self.process = a["reward_type"] == "process"
        self.neg = -1.0 if a["reward"] == "pm1" else 0.0
        self.baseline = a["baseline"]
        self.std_scale = a["std_scale"]

    def _contexts(self, step):
        """B contexts for the step; with groups, B/G contexts each repeated G times (consecutive)."""
        n = self.B // self.G
        b = self.stream.batch(step * n, n)
        if self.G == 1:
            return b
        rep = lambda a: np.repeat(a, self.G, axis=0)  # noqa: E731
        return type(b)(rep(b.X), rep(b.J), rep(b.Ystar))

    def advantages(self, r):
        """Baseline and scaling of rewards r (float64[B] outcome, or float64[B, N] process, per position).
        Groups are the G consecutive samples of one context; leave-one-out with G = 1 is over the batch."""
        B = r.shape[0]
        if self.baseline == "none":
            return r
        whole_batch = self.baseline == "batch_mean" or (self.baseline == "loo" and self.G == 1)
        grouped = r[None] if whole_batch else r.reshape((B // self.G, self.G) + r.shape[1:])
        size = grouped.shape[1]
        mean = grouped.mean(axis=1, keepdims=True)
        if self.baseline == "loo" and size > 1:
            adv = grouped - (mean * size - grouped) / (size - 1)
        else:
            adv = grouped - mean
        if self.std_scale and size > 1:
            adv = adv / (grouped.std(axis=1, ddof=1, keepdims=True) + 1e-8)
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
        pol, B, N, c = self.policy, self.B, self.features.N, self.counters
        b = self._contexts(step)
        llstar, _, _ = pol.loglik(b.X, b.J, b.Ystar)
        smp = pol.sample(b.X, b.J, "policy", seed=self.seed, first_stream=step * B)
        ok_tok = np.cumprod(smp.Y == b.Ystar, axis=1).astype(bool)      # prefix correctness r_i
        correct = ok_tok[:, -1]
        c[O.C_MIST_EXPECTED] += float(np.sum(1.0 - np.exp(llstar)))
        c[O.C_MIST_SAMPLED] += float(B - correct.sum())
        c[O.C_TOKENS] += B * N
        if self.supervised:
            g = pol.grad(b.X, b.J, b.Ystar, np.ones(B), scale=1.0 / (B * N))
            reward = 1.0
        elif self.process:
            r = np.where(ok_tok, 1.0, self.neg)
            c[O.C_PRM] += B * N
            g = pol.grad(b.X, b.J, smp.Y, self.advantages(r), scale=1.0 / (B * N), lse=smp.lse)
            reward = float(ok_tok.mean())
        else:
            r = np.where(correct, 1.0, self.neg)
            c[O.C_ORM] += B
            g = pol.grad(b.X, b.J, smp.Y, self.advantages(r), scale=1.0 / (B * N), lse=smp.lse)
            reward = float(r.mean())
        eta = gsq = 0.0
        if g.any():                 # the update's kernel computes ‖g‖² itself (in a fixed order)
            eta, gsq = pol.update(g, self.rule, self.lr, self.G2)
            c[O.C_UPDATES] += 1
        c[O.C_ROUNDS] += 1
        return [step, b.J[0], reward, correct.mean(), c[O.C_ORM], c[O.C_PRM], c[O.C_TOKENS], c[O.C_UPDATES],
                c[O.C_MIST_SAMPLED], c[O.C_MIST_EXPECTED], llstar.mean(), smp.logp.mean(), eta, np.sqrt(gsq)]


def make_learner(cfg, stream, policy, base):
    cls = BatchLearner if is_batched(cfg) else RoundLearner
    return cls(cfg, stream, policy, base)
