"""From a resolved config to the objects a run needs: task, context stream, base model, test set."""
import numpy as np

from . import kernels as K
from .errors import ConfigError
from .weights import load_policy
from .policy import Policy
from .seeds import derive_seed
from .tasks import Batch, CellsTask, ConstantTask, TeacherTask, bottleneck_base, cells_base, staircase_base


def build_task(cfg):
    t = cfg.task
    if t.kind == "teacher":
        return TeacherTask(t.d, t.k, t.N, contexts_kind=t.contexts, centres=t.centres,
                           sigma=t.sigma, seed=t.seed, normalize=t.normalize)
    if t.kind == "constant":
        return ConstantTask(t.k, t.N, M=t.M, tail=t.tail, gamma=t.gamma, seed=t.seed)
    return CellsTask(t.k, t.N, M=t.M, gamma=t.gamma, seed=t.seed)


class ContextStream:
    """Contexts by index: ``batch(first, n)`` gives contexts offset+first … offset+first+n−1 of the run's stream —
    i.i.d. from the task, or a finite pool visited in order ('cycle') or reshuffled every epoch ('shuffle').

    ``batch(first, n, until)`` says the caller will next ask for the contexts up to ``until`` in order (a batched
    learner's remaining steps): i.i.d. contexts are then drawn in read-ahead windows of up to ``AHEAD`` requests
    (at most ``WINDOW_CELLS`` numbers of X and y*, never past ``until``). A context is keyed by its index, so a
    window holds the same bits as drawing each request alone; drawing several batches in one kernel call saves
    the per-call cost and lets the context and teacher kernels run on every core where one batch alone is too
    small to (kernels/serial.py).
    """

    AHEAD = 8
    WINDOW_CELLS = 1 << 21

    def __init__(self, task, cfg):
        t = cfg.task
        self.task = task
        self.kind = t.stream
        self.seed = t.seed
        self.offset = t.offset
        self._window = (0, None)      # the i.i.d. read-ahead: (its first index, its Batch)
        if self.kind != "iid":
            if isinstance(task, CellsTask):
                size = t.pool or task.M
                self.pool = Batch(np.zeros((size, 0)), np.arange(size, dtype=np.int64) % task.M,
                                  task.ystar[np.arange(size) % task.M])
            else:
                self.pool = task.draw(0, t.pool, stream="pool")
            self.size = len(self.pool.J)

    def batch(self, first, n, until=None):
        first += self.offset
        if self.kind == "iid":
            return self._iid(first, n, first + n if until is None else until + self.offset)
        idx = np.arange(first, first + n, dtype=np.int64)
        pos = idx % self.size
        if self.kind == "shuffle":
            epochs = idx // self.size
            for e in np.unique(epochs):
                perm = np.random.default_rng(derive_seed(self.seed, "shuffle", int(e))).permutation(self.size)
                sel = epochs == e
                pos[sel] = perm[pos[sel]]
        ids = pos if isinstance(self.task, TeacherTask) else self.pool.J[pos]
        return Batch(self.pool.X[pos], ids, self.pool.Ystar[pos])

    def _iid(self, first, n, until):
        start, window = self._window
        if window is None or not (start <= first and first + n <= start + len(window.J)):
            cells = getattr(self.task, "d", 0) + self.task.N
            ahead = max(n, min(self.AHEAD * n, until - first, self.WINDOW_CELLS // cells))
            start, window = first, self.task.draw(first, ahead, stream="contexts")
            self._window = (start, window)
        return _rows(window, first - start, n)


def _rows(b, lo, n):
    return Batch(b.X[lo:lo + n], b.J[lo:lo + n], b.Ystar[lo:lo + n])


def test_batch(task, cfg):
    n = cfg.task.test_contexts
    if isinstance(task, CellsTask) and task.M <= n:
        return task.all_contexts()          # exact expectation over the uniform context distribution
    if isinstance(task, ConstantTask):
        return task.all_contexts()          # every slot once: the exact expectation (test_contexts unused)
    return task.draw(0, n, stream="test")


def tracked_batch(task, test, cfg):
    mode = cfg.run.tracked
    if mode == "centres" and isinstance(task, TeacherTask) and task.contexts_kind == "mixture":
        return task.centre_contexts()
    if mode == "none":
        return None
    n = min(cfg.run.tracked_count, len(test.J))
    # keep the contexts' own ids: a cells context *is* its id (the features read J), so renumbering them
    # 0..n−1 scored each y* on another context's cells
    return Batch(test.X[:n], test.J[:n].copy(), test.Ystar[:n])


def pretrain(task, cfg, policy):
    """The paper's base-model stage: batched supervised steps (mean over batch × N) from ``policy``."""
    b = cfg.base
    f = policy.features
    G2 = np.zeros(f.D)
    B, N = b.batch, task.N
    kind = K.step_kind(f.fm, "fit", "none")     # the step kernel's fit mode: y*'s gradient, nothing sampled
    step = f.kernel(K.STEP_NAMES[kind], B)
    params, out, g = K.step_params("fit", scale=1.0 / (B * N), kernel=kind), K.step_out(B, N), np.zeros(f.D)
    for t in range(b.steps):
        batch = task.draw(t * B, B, stream="pretrain")
        g[:] = 0.0
        step(f.fm, policy.w, policy.w, batch.X, batch.J, batch.Ystar, params, 0, 0, 0, out, g)
        policy.update(g, b.lr_rule, b.lr, G2)
    return policy


def build_base(task, cfg):
    """The initial policy w_0 (also the frozen base q_0 of the exploring algorithms)."""
    b = cfg.base
    kind = b.kind
    if kind == "zero":
        return Policy(task.features)
    if kind == "pretrain":
        return pretrain(task, cfg, Policy(task.features))
    if kind == "load":
        try:
            pol = load_policy(b.path)
        except ConfigError as exc:
            raise ConfigError(f"base.path: {exc}") from None
        if pol.features != task.features:
            raise ConfigError(f"base.path {b.path} holds weights for {pol.features}, but the task needs "
                              f"{task.features}")
        return Policy(task.features, pol.w)
    if kind == "alpha":
        return cells_base(task, b.alpha)
    if kind == "staircase":
        return staircase_base(task, b.alphas, b.fractions)[0]
    return bottleneck_base(task, b.alpha, position=b.position, easy=b.easy)

