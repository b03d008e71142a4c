"""Section 4 — the limit of a per-token algorithm: what this CPU does for the innermost lane loops of a PG token,
against the real PG step.

    python -m bench.limit [--quick]

A sampled token of the bigram policy works on k lanes. With the factorised numerator (kernels/bigram.py) a
per-token sampling pass is: e_a = Eu_a · ET[prev, a] and their sum s (k multiplies and adds), then the inverse-CDF
scan (running sum compared with u·s, early exit). A per-token gradient pass rebuilds e (k multiplies and adds),
scales it into the softmax coefficients (k multiplies) and accumulates them into the context sum and the
transition row (2k adds). Three Numba micro-kernels run exactly these lane loops over B sequences of N tokens
with every operand in L1 (a k×k table and k-vectors per block of 32 sequences), parallel over blocks like
the real kernels, one xoshiro draw per token and nothing else:

* ``mul_compare`` — the sampling pass alone (multiply / sum / compare);
* ``exp_compare`` — the same with one exponential per lane instead of the multiply (the unfactorised
  softmax every other implementation pays per token);
* ``pg_floor``    — sampling pass + gradient pass per token: the floor of any algorithm that does O(k) lane
  work for every token.

The engine's step (kernels/steps/fused.py) is not such an algorithm: a sequence's softmax rows depend on the previous
token only, so it computes each row once per sequence (at most k + 1 rows, whatever N), draws each token by a
branch-free count over the row's cached partial sums, and sums the gradient's probability terms by row. Its
ratio to pg_floor (above 100 %: faster than any per-token-lane algorithm) is the row below the micro-kernels.

For the N = 1 bandit stream of section 2, ``bandit_floor`` is one fused round of on-policy PG with the
adaptive rate (u = xᵀW1 once, k exponentials, expected-mistake score, inverse-CDF draw, and on a correct
draw the rank-one update W1 += η x ⊗ coef with ‖g‖² = ‖x‖²‖coef‖²), against the engine's
the per-round chunk driver (``kernels.rounds.DRIVERS``) on the same stream (which also scores log p(y*|x) exactly, and recomputes xᵀW1
for the score, the sample and the gradient, and sweeps all D weights to zero, measure and apply g).

Interleaved rounds as in section 1; medians.
"""
import statistics
import time

import numba
import numpy as np
from numba import njit, prange

from onlinepg.kernels.mathfn import exp_nonpos
from onlinepg.kernels.rng import seed_stream, uniform

from .report import LoadMeter, Section

BLOCK = 32
# The floors may reassociate (an upper bound on what the lane loops could do); the kernels themselves compile
# without fastmath so their bits do not depend on Numba's cache state (kernels/softmax.py).
FAST = {"reassoc", "contract", "nsz", "arcp"}
MUL, EXP, PG = 0, 1, 2
NAMES = {MUL: "mul_compare (sampling lanes: multiply, sum, compare)",
         EXP: "exp_compare (sampling lanes with one exp per lane)",
         PG: "pg_floor (sampling + gradient lanes of a PG token)"}


@njit(cache=True, fastmath=FAST, parallel=True)
def lane_kernel(mode, ET, LT, eu, B, N, seed, acc):
    """Run B sequences of N tokens through the lane loops of ``mode``; returns a checksum (so nothing is
    optimised away). ET float64[k, k] > 0 (rows of exp-transitions), LT = log ET, eu float64[k] > 0;
    acc float64[n_blocks, k + 1, k] per-block gradient accumulators (context sum row k, transitions 0..k−1)."""
    k = eu.shape[0]
    nb = (B + BLOCK - 1) // BLOCK
    scratch = np.empty((nb, 2, k))
    states = np.empty((nb, 4), np.uint64)
    sums = np.zeros(nb)
    for blk in prange(nb):
        e = scratch[blk, 0]
        coef = scratch[blk, 1]
        state = states[blk]
        seed_stream(seed, blk, state)
        g = acc[blk]
        chk = 0.0
        for b in range(blk * BLOCK, min(B, (blk + 1) * BLOCK)):
            prev = b % k
            for i in range(N):
                s = 0.0
                if mode == EXP:
                    for a in range(k):
                        v = exp_nonpos(LT[prev, a])
                        e[a] = v
                        s += v
                else:
                    for a in range(k):
                        v = eu[a] * ET[prev, a]
                        e[a] = v
                        s += v
                target = uniform(state) * s
                run = 0.0
                y = k - 1
                for a in range(k):
                    run += e[a]
                    if run > target:
                        y = a
                        break
                if mode == PG:
                    s2 = 0.0
                    for a in range(k):             # rebuilt, as the real gradient pass must (no N·k store)
                        v = eu[a] * ET[prev, a]
                        e[a] = v
                        s2 += v
                    c = -0.5 / s2
                    for a in range(k):
                        coef[a] = c * e[a]
                    coef[y] += 0.5
                    for a in range(k):
                        g[k, a] += coef[a]
                        g[prev, a] += coef[a]
                chk += s
                prev = y
        sums[blk] = chk
    return sums.sum()


@njit(cache=True, fastmath=FAST)
def bandit_floor(X, ystar, k, seed, W):
    """Fused N = 1 on-policy PG rounds with 0/1 reward and η = 1/(4 + 2‖g‖²) over X float64[T, d],
    ystar int64[T]; W float64[d, k] (updated). Returns (sampled mistakes, expected mistakes)."""
    T, d = X.shape
    u = np.empty(k)
    e = np.empty(k)
    state = np.empty(4, np.uint64)
    mistakes = 0
    expected = 0.0
    for t in range(T):
        x = X[t]
        seed_stream(seed, t, state)
        for a in range(k):
            u[a] = 0.0
        xn = 0.0
        for c in range(d):
            xc = x[c]
            xn += xc * xc
            for a in range(k):
                u[a] += xc * W[c, a]
        m = u[0]
        for a in range(1, k):
            m = max(m, u[a])
        s = 0.0
        for a in range(k):
            v = exp_nonpos(u[a] - m)
            e[a] = v
            s += v
        expected += 1.0 - e[ystar[t]] / s
        target = uniform(state) * s
        run = 0.0
        y = k - 1
        for a in range(k):
            run += e[a]
            if run > target:
                y = a
                break
        if y != ystar[t]:
            mistakes += 1
            continue
        cn = 0.0
        for a in range(k):
            e[a] = -e[a] / s
        e[y] += 1.0
        for a in range(k):
            cn += e[a] * e[a]
        eta = 1.0 / (4.0 + 2.0 * xn * cn)
        for c in range(d):
            ex = eta * x[c]
            for a in range(k):
                W[c, a] += ex * e[a]
    return mistakes, expected


class BanditEngine:
    """The engine's per-round kernel on section 2's stream (on-policy PG, adaptive LR), from w = 0."""

    def __init__(self, X, J, Ystar):
        self.args = (X, J, Ystar)
        self.reset()

    def reset(self):
        from .bandit import OnlinepgLearner
        self.lr = OnlinepgLearner("pg", *self.args)

    def step(self):
        self.lr.process(0, len(self.args[0]))
        return self.lr.mistakes


class BanditFloor:
    def __init__(self, X, Ystar, k):
        self.X, self.y, self.k = X, np.ascontiguousarray(Ystar[:, 0]), k
        self.reset()

    def reset(self):
        self.W = np.zeros((self.X.shape[1], self.k))

    def step(self):
        return bandit_floor(self.X, self.y, self.k, 7, self.W)[0]


def tables(k, seed=0):
    rng = np.random.default_rng(seed)
    LT = -np.abs(rng.standard_normal((k, k)))
    return np.exp(LT), LT, np.exp(-np.abs(rng.standard_normal(k)))


class Micro:
    """One micro-kernel at (B, N, k) with the ``step()/reset()`` interface of the PG implementations."""

    def __init__(self, mode, B, N, k):
        self.mode, self.B, self.N = mode, B, N
        self.ET, self.LT, self.eu = tables(k)
        self.acc = np.zeros(((B + BLOCK - 1) // BLOCK, k + 1, k))
        self.t = 0

    def step(self):
        self.t += 1
        return lane_kernel(self.mode, self.ET, self.LT, self.eu, self.B, self.N, self.t, self.acc)

    def reset(self):
        pass


def measure(impls, reps, warm, threads):
    times = {key: [] for key in impls}
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        for impl in impls.values():
            impl.step()
        for _ in range(reps):
            for key, impl in impls.items():
                t0 = time.perf_counter()
                impl.step()
                while time.perf_counter() - t0 < warm:       # let the thread pool settle into this kernel
                    impl.step()
                impl.reset()
                t0 = time.perf_counter()
                impl.step()
                times[key].append(time.perf_counter() - t0)
    finally:
        numba.set_num_threads(before)
    return {key: statistics.median(v) for key, v in times.items()}, times


def run(quick=False, log=print, reps=None, warm=None):
    from .kernels import OnlinePG, make_problem
    B, N, k = (64, 16, 16) if quick else (1024, 128, 32)
    reps = reps or (2 if quick else 7)
    warm = (0.02 if quick else 0.2) if warm is None else warm
    tokens = B * N
    sec = Section(4, "The limit of a per-token algorithm: the innermost lane loops on this CPU, against the PG step",
                  setup=f"B = {B} sequences × N = {N} tokens, k = {k} lanes (d = {k} for the PG step); micro-"
                        "kernels over L1-resident tables with one xoshiro draw per token, parallel over blocks of "
                        f"32 sequences like the real kernels; {reps} interleaved rounds of [untimed calls for "
                        f"{warm:g} s, one timed call], medians. ns/token·k = time / (B·N·k).")
    p = make_problem(B, N, k, k, 0)
    impls = {m: Micro(m, B, N, k) for m in (MUL, EXP, PG)}
    impls["step"] = OnlinePG(p["X"], p["Ystar"], p["w0"], 1)
    log(f"[4] micro-kernels and the PG step, {reps} rounds at 2 threads and at 1")
    with LoadMeter() as meter:
        med2, raw2 = measure(impls, reps, warm, 2)
        med1, raw1 = measure(impls, reps, warm, 1)
    sec.load = meter.as_dict()
    for key in (MUL, EXP, PG, "step"):
        name = NAMES.get(key, "the real PG step (sample, reward, gradient, Adagrad; section 1's kernels)")
        n2, n1 = med2[key] / tokens * 1e9, med1[key] / tokens * 1e9
        sec.add(name, f"{n2 / k:.2f} ns/token·k at 2 threads ({n2:.1f} ns/token; {tokens / med2[key]:.3g} tokens/s)",
                note=f"1 thread: {n1 / k:.2f} ns/token·k ({med1[key] / med2[key]:.2f}× the 2-thread time)",
                data=dict(ns_per_token_2t=n2, ns_per_token_1t=n1, samples_s_2t=raw2[key], samples_s_1t=raw1[key]))
    _bandit_rows(sec, quick, reps)
    share2, share1 = med2[PG] / med2["step"], med1[PG] / med1["step"]
    sec.add("the PG step against the per-token floor (pg_floor time / step time; > 100 %: faster than any "
            "per-token-lane algorithm)",
            f"{share2:.0%} at 2 threads, {share1:.0%} at 1 thread",
            note=f"sampling lanes alone are {med2[MUL] / med2['step']:.0%} of the step; one exp per lane would "
                 f"cost {med2[EXP] / med2[MUL]:.1f}× the multiply",
            data=dict(share_2t=share2, share_1t=share1))
    return sec


def _bandit_rows(sec, quick, reps):
    """The N = 1 round: the engine's kernel loop vs the fused floor, interleaved, on section 2's stream."""
    from .bandit import K_CLASSES, make_stream
    T = 20_000 if quick else 1_000_000
    X, J, Ystar = make_stream(T)
    impls = {"engine": BanditEngine(X, J, Ystar), "floor": BanditFloor(X, Ystar, K_CLASSES)}
    times = {key: [] for key in impls}
    mistakes = {}
    for impl in impls.values():
        impl.step()                               # compile / load outside the clock
    for _ in range(max(3, reps // 2)):
        for key, impl in impls.items():
            impl.reset()
            t0 = time.perf_counter()
            mistakes[key] = impl.step()
            times[key].append(time.perf_counter() - t0)
    med = {key: statistics.median(v) / T * 1e9 for key, v in times.items()}
    sec.add(f"N = 1 bandit round (k = {K_CLASSES}, d = 20; section 2's stream, {T:,} rounds): engine kernel vs "
            "fused floor", f"chunk driver {med['engine']:.0f} ns/round ({1e9 / med['engine']:.3g} rounds/s) vs "
            f"bandit_floor {med['floor']:.0f} ns/round ({1e9 / med['floor']:.3g} rounds/s)",
            f"engine at {med['floor'] / med['engine']:.0%} of the floor",
            note=f"mistakes: {mistakes['engine']:,} vs {mistakes['floor']:,} (same learner, different draws)",
            data=dict(ns_per_round_engine=med["engine"], ns_per_round_floor=med["floor"], mistakes=mistakes,
                      samples_s={k: v for k, v in times.items()}))


def main(argv=None):
    import argparse
    from .report import section_markdown
    ap = argparse.ArgumentParser(prog="python -m bench.limit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    print(section_markdown(run(ap.parse_args(argv).quick)))


if __name__ == "__main__":
    main()
