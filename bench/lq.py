"""Exact Likelihood Quantile at the paper's Figure-2 shape: ``python -m bench.lq [--quick] [--reps R]``.

Bigram features, N = 100, k = 10, d = 32, Rademacher contexts, 16384 contexts (docs/theory.md §6 lq-curves).
The model is the paper's first pre-training checkpoint: supervised Adagrad (lr 1.0, batch 256) for 500 steps from w = 0
(``--steps``). Timed, with 1 and 2 Numba threads (``numba.set_num_threads``), rounds interleaved 1, 2, 1, 2, …
so drift hits both alike, median over ``--reps`` rounds:

  contexts + y*      task.draw(0, n, stream="lq"): Rademacher rows and the teacher's argmax paths
  exact likelihoods  evaluate_likelihoods: log p(y*|x) and the min-token log-prob (loglik_batch, chunked)
  + per-token        the same, also keeping the per-token log-probs float64[n, N]
  estimators         Q̂ and Q̂^TL on 99 ε values, F̂ and the α-tail on 1000 α values (sorts and searches)
  end to end         evaluate_task (draw + evaluate, chunk by chunk) + the estimators: what `onlinepg lq` does

A vectorised NumPy reference (loop over the N positions, logsumexp over (n, k)) computes the same
log-likelihoods once per round for scale; the bench first checks that it agrees with onlinepg to 1e-10.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np


def numpy_loglik(features, w, X, Y):
    """Reference log p(y|x) and min-token log-prob, vectorised over contexts (float64[n] each)."""
    from scipy.special import logsumexp
    d, k, N = features.d, features.k, features.N
    W1 = w[: d * k].reshape(d, k)
    W2T = w[d * k:].reshape(k, k)
    ctx = X @ W1
    rows = np.arange(len(X))
    total = np.zeros(len(X))
    worst = np.full(len(X), np.inf)
    for i in range(N):
        logits = ctx + (features.tscale * W2T[Y[:, i - 1]] if i > 0 else 0.0)
        lp = logits[rows, Y[:, i]] - logsumexp(logits, axis=1)
        total += lp
        worst = np.minimum(worst, lp)
    return total, worst


def pretrained(task, steps, batch=256, lr=1.0):
    """The paper's base model stage: batched supervised Adagrad from w = 0."""
    import onlinepg as op
    pol = op.Policy(task.features)
    G2 = np.zeros(task.features.D)
    for s in range(steps):
        b = task.draw(s * batch, batch, stream="pretrain")
        g = pol.grad(b.X, b.J, b.Ystar, np.ones(batch), scale=1.0 / (batch * task.N))
        pol.update(g, "adagrad", lr, G2)
    return pol


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contexts", type=int, default=16384)
    ap.add_argument("--N", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--steps", type=int, default=500, help="pre-training steps of the evaluated model")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="2048 contexts, 50 steps, 3 rounds")
    args = ap.parse_args(argv)
    if args.quick:
        args.contexts, args.steps, args.reps = 2048, 50, 3

    import numba

    import onlinepg as op
    from onlinepg import lq as L

    threads = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]
    n = args.contexts
    task = op.TeacherTask(d=args.d, k=args.k, N=args.N, contexts_kind="rademacher", seed=0)
    print(f"machine: {os.cpu_count()} CPUs | numba {numba.__version__}, threads available "
          f"{numba.config.NUMBA_NUM_THREADS} | python {sys.version.split()[0]} | load avg {os.getloadavg()[0]:.2f}")
    print(f"shape: bigram N={args.N} k={args.k} d={args.d}, {n} Rademacher contexts "
          f"({n * args.N:,} tokens); model: {args.steps} supervised Adagrad steps (lr 1.0, batch 256)")
    t_pre, pol = _timed(lambda: pretrained(task, args.steps))
    batch = task.draw(0, n, stream=L.LQ_STREAM)
    eps = np.linspace(0.01, 0.99, 99)

    def estimators(lik):
        grid = L.log_alpha_grid([lik.loglik], num=1000)
        return (L.lq_profile(lik, eps), L.likelihood_cdf(lik, grid), L.alpha_tail(lik, grid))

    # warm: compile / load every kernel on both paths, then the correctness gate
    lik = L.evaluate_likelihoods(pol, batch, token_logp=True)
    estimators(lik)
    L.evaluate_task(pol, task, 256)
    ref_ll, ref_min = numpy_loglik(task.features, pol.w, batch.X, batch.Ystar)
    err = max(np.abs(ref_ll - lik.loglik).max() / np.abs(ref_ll).max(),
              np.abs(ref_min - lik.min_token).max() / np.abs(ref_min).max())
    if err > 1e-10:
        sys.exit(f"onlinepg and the NumPy reference disagree: max relative |Δ| = {err:.2e}")
    print(f"pre-training took {t_pre:.1f} s; mean p(y*|x) = {np.exp(lik.loglik).mean():.3f}, "
          f"Q(0.1) = {L.format_likelihood(L.likelihood_quantile(lik, 0.1))}, "
          f"Q_TL(0.1) = {L.format_likelihood(L.token_likelihood_quantile(lik, 0.1))}; "
          f"NumPy reference agrees (max rel |Δ| {err:.1e})\n")

    measures = {
        "contexts + y* (task.draw)": lambda: task.draw(0, n, stream=L.LQ_STREAM),
        "exact likelihoods (loglik + min-token)": lambda: L.evaluate_likelihoods(pol, batch),
        "  + per-token log-probs kept": lambda: L.evaluate_likelihoods(pol, batch, token_logp=True),
        "estimators (99 eps, 1000 alpha)": lambda: estimators(lik),
        "end to end: evaluate_task + estimators": lambda: estimators(L.evaluate_task(pol, task, n)),
    }
    times = {(m, t): [] for m in measures for t in threads}
    numpy_times = []
    before = numba.get_num_threads()
    from bench.report import system_busy_s
    busy0, own0, wall0 = system_busy_s(), time.process_time(), time.perf_counter()
    for _ in range(args.reps):
        for t in threads:
            numba.set_num_threads(t)
            for name, fn in measures.items():
                fn()                                   # one untimed call: thread pool awake, caches warm
                times[(name, t)].append(_timed(fn)[0])
        numpy_times.append(_timed(lambda: numpy_loglik(task.features, pol.w, batch.X, batch.Ystar))[0])
    numba.set_num_threads(before)
    # parallel regions stall whenever another process holds a core: report others' CPU use with the figures
    busy1, own1, wall1 = system_busy_s(), time.process_time(), time.perf_counter()
    others = None if busy0 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)

    med = {key: statistics.median(v) for key, v in times.items()}
    head = f"{'measure (median ms)':<42}" + "".join(f"{f'{t} thread' + ('s' if t > 1 else ''):>12}" for t in threads)
    if len(threads) == 2:
        head += f"{'speed-up':>10}"
    print(head)
    for name in measures:
        row = f"{name:<42}" + "".join(f"{1e3 * med[(name, t)]:>12.2f}" for t in threads)
        if len(threads) == 2:
            row += f"{med[(name, 1)] / med[(name, 2)]:>9.2f}x"
        print(row)
    key = "exact likelihoods (loglik + min-token)"
    np_med = statistics.median(numpy_times)
    print(f"{'NumPy reference (vectorised, same output)':<42}{1e3 * np_med:>12.2f}")
    for t in threads:
        print(f"exact likelihoods, {t} thread{'s' if t > 1 else ''}: {n * args.N / med[(key, t)]:,.0f} tokens/s, "
              f"{n / med[(key, t)]:,.0f} contexts/s, {np_med / med[(key, t)]:.1f}x the NumPy reference")

    if others is not None:
        print(f"load: other processes kept {others:.2f} of {os.cpu_count()} cores busy during the rounds"
              + ("  WARNING: machine not idle; the 2-thread figures are pessimistic" if others > 0.1 else ""))


if __name__ == "__main__":
    main()
