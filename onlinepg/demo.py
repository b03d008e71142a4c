"""A small end-to-end demonstration with the real kernels: pre-train a base model by supervised Adagrad,
then post-train it with on-policy outcome-reward policy gradient, printing the exact test error."""
import time

import numpy as np

from .policy import Policy
from .tasks import TeacherTask


def test_error(policy, batch):
    """err(w) = 1 − mean_x p_w(y*(x)|x), exact from log-likelihoods."""
    ll, _, _ = policy.loglik(batch.X, batch.J, batch.Ystar)
    return float(1.0 - np.exp(ll).mean())


def demo(d=16, k=8, N=8, batch=256, pretrain_steps=60, steps=300, seed=0, out=print):
    task = TeacherTask(d, k, N, seed=seed)
    test = task.draw(0, 2048, stream="test")
    pol = Policy(task.features)
    G2 = np.zeros(task.features.D)
    t0 = time.perf_counter()
    out(f"task: bigram teacher d={d} k={k} N={N}, Rademacher contexts; uniform policy err = "
        f"{test_error(pol, test):.4f}")
    for s in range(pretrain_steps):
        b = task.draw(s * batch, batch, stream="pretrain")
        g = pol.grad(b.X, b.J, b.Ystar, np.ones(batch), scale=1.0 / (batch * N))
        pol.update(g, "adagrad", 0.1, G2)
    out(f"base model after {pretrain_steps} supervised Adagrad steps: test error {test_error(pol, test):.4f}")
    G2[:] = 0.0
    out(f"{'step':>6} {'reward':>8} {'test_error':>11}")
    for s in range(steps):
        b = task.draw(s * batch, batch, stream="posttrain")
        smp = pol.sample(b.X, b.J, "policy", seed=seed, first_stream=s * batch)
        r = np.where((smp.Y == b.Ystar).all(axis=1), 1.0, -1.0)
        g = pol.grad(b.X, b.J, smp.Y, r - r.mean(), scale=1.0 / (batch * N), lse=smp.lse)
        pol.update(g, "adagrad", 0.1, G2)
        if s % 50 == 0 or s == steps - 1:
            out(f"{s:>6} {np.mean(r > 0):>8.3f} {test_error(pol, test):>11.4f}")
    out(f"done in {time.perf_counter() - t0:.2f} s")
    return test_error(pol, test)
