"""When things happen in a run, as pure functions of the resolved config (so chunking and resume never move
them): the checkpoint interval and the evaluation schedule. The engine runs
by them and ``limits`` estimates a run's disk use from them."""
import math


def checkpoint_interval(cfg):
    """Rounds between checkpoints: run.checkpoint_every exactly when set, else a multiple of eval_every about
    10^5 sampled tokens apart."""
    r = cfg.run
    if r.checkpoint_every:
        return r.checkpoint_every
    per_round = (cfg.algo.batch if cfg.algo.batched else 1) * cfg.task.N
    return r.eval_every * max(1, math.ceil(1e5 / (r.eval_every * per_round)))


class Schedule:
    """When a run evaluates the test error (every ``eval_every`` rounds, plus ``eval_log_points`` log-spaced
    rounds, plus the last) and the tracked contexts (every ``track_every`` rounds, or at every evaluation when
    it is 0; round 0 and the last round always). A pure function of the config, so chunking and resume do not
    move it."""

    def __init__(self, cfg):
        r = cfg.run
        self.total, self.every, self.track_every = r.rounds, r.eval_every, r.track_every
        n = r.eval_log_points
        self.log = sorted({int(self.total ** (i / n)) for i in range(1, n + 1)}) if n else []

    def is_eval(self, t):
        return t % self.every == 0 or t == self.total or t in self.log

    def is_track(self, t):
        if self.track_every == 0:
            return self.is_eval(t)
        return t % self.track_every == 0 or t == self.total

    def next_event(self, t):
        """The first round after ``t`` at which something is evaluated."""
        nxt = (t // self.every + 1) * self.every
        for p in self.log:
            if p > t:
                nxt = min(nxt, p)
                break
        if self.track_every:
            nxt = min(nxt, (t // self.track_every + 1) * self.track_every)
        return nxt
