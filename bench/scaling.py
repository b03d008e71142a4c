"""Section 3 — scaling of the on-policy PG step: tokens/s and ns per token·k as N, k, d and the batch grow,
and 1 vs 2 cores.

    python -m bench.scaling [--quick]

The step is the one of ``bench.kernels`` (sample, ±1 outcome reward with batch-mean baseline, gradient,
Adagrad), run by its ``OnlinePG`` from the same kind of start weights (β·teacher + noise with mean
p(y*|x) = 0.5, so no zero-advantage sequence lets the gradient skip work). One axis moves at a time from the
paper's Figure-1 shape (N = 128, d = k = 32, B = 1024, 2 threads). Protocol as in ``bench.kernels``: every
configuration in turn (interleaved rounds) runs untimed steps for ``warm`` seconds, is reset to its start
weights, and times one step; medians over rounds. Expected shape (kernels/steps/fused.py): a token costs an RNG
draw, a k-lane count over its row's cached partial sums and O(1) bookkeeping; each softmax row a sequence uses
(at most k + 1, one per distinct previous token) costs O(k) once, for the draw and for the gradient; x·W1 and its
k exponentials cost d·k once per sequence. So ns/token does not grow with N (the per-sequence work is spread
over N tokens: a + b/N), grows at most linearly in k (the count is k lanes; the rows add up to (k + 1)·k/N per
token, which is at most linear while k ≤ N), and d only adds d·k/N per token.
"""
import statistics
import time

import numba
import numpy as np

from .report import LoadMeter, Section

PAPER = dict(N=128, d=32, k=32, B=1024, threads=2)
QUICK = dict(N=16, d=16, k=16, B=64, threads=2)
AXES = {"N": (32, 128, 512), "k": (8, 16, 32, 64, 128), "d": (8, 32, 128), "B": (256, 1024, 4096)}
QUICK_AXES = {"N": (8, 16, 32), "k": (4, 8, 16, 32), "d": (4, 16), "B": (32, 64, 128)}
FLAT_GROWTH = 1.10         # "flat in N": ns/token at the largest N ≤ 1.1 × at the smallest (no growth with N)
# "at most linear in k": ns/token at the largest k ≤ (k_max / k_min) × at the smallest (the fit a + b·k is reported)


def grid(base, axes):
    """The configurations: the base shape, one axis varied at a time, and the base at 1 thread."""
    configs = [dict(base)]
    for axis, values in axes.items():
        configs += [dict(base, **{axis: v}) for v in values if v != base[axis]]
    configs.append(dict(base, threads=1))
    return configs


def label(c):
    return f"N={c['N']} k={c['k']} d={c['d']} B={c['B']} threads={c['threads']}"


def measure(configs, reps, warm, seed=0):
    """Seconds per timed step for every configuration (list per config, in config order)."""
    from .kernels import OnlinePG, make_problem
    threads0 = numba.get_num_threads()
    impls = []
    for c in configs:
        p = make_problem(c["B"], c["N"], c["d"], c["k"], seed)
        impls.append(OnlinePG(p["X"], p["Ystar"], p["w0"], seed + 1))
    times = [[] for _ in configs]
    try:
        for impl, c in zip(impls, configs):
            numba.set_num_threads(min(c["threads"], numba.config.NUMBA_NUM_THREADS))
            impl.step()
        for _ in range(reps):
            for i, (impl, c) in enumerate(zip(impls, configs)):
                numba.set_num_threads(min(c["threads"], numba.config.NUMBA_NUM_THREADS))
                t0 = time.perf_counter()
                impl.step()
                while time.perf_counter() - t0 < warm:     # the thread pool settles into this shape
                    impl.step()
                impl.reset()
                t0 = time.perf_counter()
                impl.step()
                times[i].append(time.perf_counter() - t0)
    finally:
        numba.set_num_threads(threads0)
    return times


def linear_fit(xs, ys):
    """Least squares y = a + b·x; returns (a, b, R²)."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    ss = float(((y - y.mean()) ** 2).sum())
    return float(a), float(b), 1.0 - float((resid ** 2).sum()) / ss if ss > 0 else 1.0


def run(quick=False, log=print, reps=None, warm=None):
    base, axes = (QUICK, QUICK_AXES) if quick else (PAPER, AXES)
    reps = reps or (2 if quick else 5)
    warm = 0.02 if quick and warm is None else (0.1 if warm is None else warm)
    configs = grid(base, axes)
    sec = Section(3, "Scaling of the PG step (tokens/s, ns per token·k)",
                  setup=f"One on-policy PG step (as in section 1) from the base shape {label(base)}, one axis "
                        f"varied at a time; {reps} interleaved rounds of [untimed steps for {warm:g} s, one timed "
                        f"step], medians. ns/token·k = step time / (B·N·k).")
    log(f"[3] {len(configs)} configurations, {reps} rounds")
    with LoadMeter() as meter:
        times = measure(configs, reps, warm)
    sec.load = meter.as_dict()
    med = [statistics.median(t) for t in times]
    per_tok = [m / (c["B"] * c["N"]) * 1e9 for m, c in zip(med, configs)]
    ref = per_tok[0]
    for c, m, nt in zip(configs, med, per_tok):
        tokens = c["B"] * c["N"]
        sec.add(label(c), f"{tokens / m:.3g} tokens/s · {nt:.1f} ns/token · {nt / c['k']:.2f} ns/token·k",
                f"{nt / ref:.2f}× base ns/token", note=f"{1e3 * m:.2f} ms/step",
                data=dict(config=c, step_s=m, samples_s=times[configs.index(c)], tokens_per_s=tokens / m,
                          ns_per_token=nt, ns_per_token_k=nt / c["k"]))

    def along(axis):
        idx = [i for i, c in enumerate(configs) if c["threads"] == base["threads"] and
               all(c[a] == base[a] for a in ("N", "k", "d", "B") if a != axis)]
        return sorted((configs[i][axis], per_tok[i]) for i in idx)

    n_pts = along("N")
    ns, vs = zip(*n_pts)
    a_n, b_n, r2_n = linear_fit([1.0 / n for n in ns], vs)       # ns/token = per-token + per-sequence / N
    growth = vs[-1] / vs[0]
    sec.add("cost per token vs N", f"ns/token ≈ {a_n:.1f} + {b_n:.0f}/N (R² = {r2_n:.3f})",
            " · ".join(f"N={n}: {v:.1f}" for n, v in n_pts), f"no growth with N (N={ns[-1]} ≤ {FLAT_GROWTH}× N={ns[0]})",
            "PASS" if growth <= FLAT_GROWTH else "MISS",
            note=f"{a_n:.1f} ns per token whatever N; the {b_n:.0f} ns per sequence (xᵀW1: d·k multiply-adds and "
                 "k exponentials, RNG seeding) is spread over its N tokens",
            data=dict(points=n_pts, per_token_ns=a_n, per_sequence_ns=b_n, r2=r2_n, growth=growth))
    k_pts = along("k")
    a, b, r2 = linear_fit(*zip(*k_pts))
    ks, kv = zip(*k_pts)
    k_growth, k_ratio = kv[-1] / kv[0], ks[-1] / ks[0]
    sec.add("cost per token vs k", f"ns/token ≈ {a:.1f} + {b:.2f}·k (R² = {r2:.3f})",
            " · ".join(f"k={k}: {v:.1f}" for k, v in k_pts),
            f"at most linear (k={ks[-1]} ≤ {k_ratio:.0f}× k={ks[0]})", "PASS" if k_growth <= k_ratio else "MISS",
            note=f"{k_growth:.1f}× from k={ks[0]} to k={ks[-1]}; intercept = per-token fixed cost (RNG draw, "
                 "bookkeeping), slope = the k-lane count plus each row's O(k) work spread over the sequence",
            data=dict(points=k_pts, intercept=a, slope=b, r2=r2, growth=k_growth))
    one = next(i for i, c in enumerate(configs) if c["threads"] == 1)
    usable = numba.config.NUMBA_NUM_THREADS
    if usable < 2:
        sec.skip("1 vs 2 cores", f"only {usable} Numba thread available")
    else:
        sec.add("1 vs 2 cores (base shape)", f"{med[one] * 1e3:.2f} ms vs {med[0] * 1e3:.2f} ms per step",
                f"{med[one] / med[0]:.2f}× speed-up", note="ideal 2×",
                data=dict(one_thread_s=med[one], two_threads_s=med[0], speedup=med[one] / med[0]))
    return sec


def main(argv=None):
    import argparse
    from .report import section_markdown
    ap = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    print(section_markdown(run(ap.parse_args(argv).quick)))


if __name__ == "__main__":
    main()
