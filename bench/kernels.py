"""Kernel benchmark: one on-policy policy-gradient step at the paper's Figure-1 shape, onlinepg vs peers.

    python -m bench.kernels [--reps 10] [--quick] [--json PATH] [--[no-]compile] [--warm 0.2]

A step = sample one response per context from p_w, outcome reward ±1 (+1 iff the response equals the
teacher's y*), advantage = reward − batch mean broadcast to every token, gradient of
−mean_{b,i}[A_b log p_w(y_{b,i}|·)], Adagrad lr 0.1. Three implementations run interleaved in one process:
onlinepg (Numba kernels), NumPy (bench.peers_numpy), PyTorch (bench.peers_torch). See bench/README.md.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

import onlinepg.kernels as K
from onlinepg.features import pick

from . import peers_numpy
from .report import system_busy_s

LR = 0.1
TARGETS = {"numpy": 30.0, "torch": 50.0}    # required speed-up of onlinepg over each peer
ROOT = Path(__file__).resolve().parent.parent


def make_problem(B, N, d, k, seed, target_success=0.5):
    """Fixed context pool X (float64[B, d], Rademacher), teacher y* (int64[B, N]) and start weights w0
    (float64[D], kernel layout) = β·teacher + 0.05·N(0,1).

    β is chosen by bisection so that mean_b p_w0(y*_b|x_b) = target_success. The reason: from a small
    random w0 every response is wrong, every reward is −1, every advantage is 0 — and onlinepg's gradient
    kernel skips zero-advantage sequences, so the benchmark would time no gradient at all."""
    rng = np.random.default_rng(seed)
    X = rng.choice([-1.0, 1.0], size=(B, d))
    W1s, W2s = rng.standard_normal((k, d)), rng.standard_normal((k, k))
    Ystar = peers_numpy.teacher_responses(X, W1s, W2s, N)
    w_teacher = np.concatenate([W1s.T.ravel(), W2s.T.ravel()])    # kernel layout: W1 (d,k), W2T[prev,a]
    noise = 0.05 * rng.standard_normal(w_teacher.size)
    fm, J = K.FeatureMap(K.BIGRAM, k, N, 1.0), np.zeros(B, np.int64)
    ll, mn, tok = np.empty(B), np.empty(B), np.empty((B, N))

    def success(beta):
        K.loglik_batch(fm, beta * w_teacher + noise, X, J, Ystar, ll, mn, tok)
        return float(np.exp(ll).mean())

    lo, hi = 0.0, 64.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if success(mid) < target_success else (lo, mid)
    beta = 0.5 * (lo + hi)
    return dict(X=X, Ystar=Ystar, w0=beta * w_teacher + noise, beta=beta, success0=success(beta))


class OnlinePG:
    """onlinepg state: weights w, Adagrad sum G2 (float64[D]), the fused step's parameters and buffers
    (``kernels.steps.pg_step``: per-row RNG states, Y, log-likelihoods, prefix lengths) and the gradient g (float64[D])."""

    name = "onlinepg (numba, float64)"

    def __init__(self, X, Ystar, w0, seed):
        B, N = Ystar.shape
        k = peers_numpy.infer_k(w0.size, X.shape[1])
        self.fm = K.FeatureMap(K.BIGRAM, k, N, 1.0)
        self.X, self.Ystar, self.seed, self.t = X, Ystar, seed, 0
        self.w0, self.w, self.G2, self.g = w0, w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
        self.params = K.step_params("outcome", "pm1", "batch_mean", scale=1.0 / (B * N))
        self.out = K.step_out(B, N)
        self.kernel = pick(K, "pg_step", B, N * k)          # the twin the engine picks for this size
        self.J = np.zeros(B, np.int64)                      # context ids (read by the cells map only)

    def reset(self):
        """Back to w0 and an empty Adagrad sum (the RNG streams move on)."""
        self.w[:] = self.w0
        self.G2[:] = 0.0

    @property
    def Y(self):
        return self.out.Y

    @property
    def adv(self):
        """The batch-mean advantages of the last step (float64[B])."""
        r = np.where(self.out.prefix == self.Ystar.shape[1], 1.0, -1.0)
        return r - r.mean()

    def sample_grad(self):
        """The fused step: sample (streams keyed by (seed, step·B + b), so the same step draws the same responses
        whatever the threads), reward, baseline and gradient in one kernel call."""
        self.g[:] = 0.0
        self.kernel(self.fm, self.w, self.w0, self.X, self.J, self.Ystar, self.params, self.seed,
                    self.t * self.Y.shape[0], 0, self.out, self.g)

    def update(self):
        K.apply_update(K.ADAGRAD, self.w, self.g, LR, self.G2)
        self.t += 1

    def step(self):
        """One on-policy PG step; returns the batch success fraction."""
        self.sample_grad()
        self.update()
        return float(np.mean(self.out.prefix == self.Ystar.shape[1]))

    def step_phases(self):
        """Same as :meth:`step`, returning seconds per phase (for the breakdown)."""
        out, t0 = {}, time.perf_counter()
        for phase in ("sample_grad", "update"):
            getattr(self, phase)()
            t1 = time.perf_counter()
            out[phase], t0 = t1 - t0, t1
        return out


class OnlineGRPO:
    """onlinepg's GRPO step (``kernels.steps.grpo_step``, docs/theory.md §4.9) at the bench's shape: B/G contexts ×
    G samples, 0/1 outcome rewards, group-normalised advantages, μ updates (Adagrad) on the same samples with the
    clipped ratio (ε 0.2 / 0.28) and the k3 KL to the start weights (β), DAPO's token-mean loss."""

    name = "onlinepg GRPO (numba, float64)"

    def __init__(self, X, Ystar, w0, seed, G=8, mu=2, beta=0.04):
        B, N = Ystar.shape
        k = peers_numpy.infer_k(w0.size, X.shape[1])
        self.fm = K.FeatureMap(K.BIGRAM, k, N, 1.0)
        self.X, self.Ystar, self.seed, self.t, self.mu = X, Ystar, seed, 0, mu
        self.w0, self.w, self.G2, self.g = w0, w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
        self.params = K.step_params("outcome", "01", "none", G, False, 1.0 / (B * N), kernel="grpo", iterations=mu,
                                    epsilon=0.2, epsilon_high=0.28, beta=beta)
        self.out = K.step_out(B, N)
        self.kernel = pick(K, "grpo_step", B, N * k)
        self.J = np.zeros(B, np.int64)

    def reset(self):
        self.w[:] = self.w0
        self.G2[:] = 0.0

    def grad(self, it):
        self.g[:] = 0.0
        self.kernel(self.fm, self.w, self.w0, self.X, self.J, self.Ystar, self.params, self.seed,
                    self.t * self.Ystar.shape[0], it, self.out, self.g)

    def step(self):
        for it in range(self.mu):
            self.grad(it)
            K.apply_update(K.ADAGRAD, self.w, self.g, LR, self.G2)
        self.t += 1
        return float(np.mean(self.out.prefix == self.Ystar.shape[1]))

    def step_phases(self):
        t0 = time.perf_counter()
        self.step()
        return {"grpo_step": time.perf_counter() - t0}


def grpo_problem(p, G):
    """bench's problem as GRPO takes it: the first B/G contexts, each repeated G times (consecutive rows)."""
    B = len(p["X"])
    rep = lambda a: np.ascontiguousarray(np.repeat(a[:B // G], G, axis=0))  # noqa: E731
    return dict(p, X=rep(p["X"]), Ystar=rep(p["Ystar"]))


def check_grpo_gradients(p, torch_mod, G):
    """From the start weights and onlinepg's samples, PyTorch's first GRPO gradient (ratio 1, KL 0 at the
    reference) equals onlinepg's to float32 rounding; returns max|Δ|/max|g| (None without torch)."""
    ref = OnlineGRPO(p["X"], p["Ystar"], p["w0"], 12345, G=G)
    ref.grad(0)
    g, gmax = ref.g.copy(), np.abs(ref.g).max()
    if gmax == 0.0:
        raise SystemExit("GRPO gradient check: the onlinepg gradient is identically zero")
    if not torch_mod.HAVE_TORCH:
        return None
    gt = torch_mod.TorchGRPO(p["X"], p["Ystar"], p["w0"], 0, G=G).ascent_grad(ref.out.Y, ref.out.adv)
    err = float(np.abs(gt - g).max() / gmax)
    if not np.allclose(gt, g, rtol=1e-4, atol=1e-4 * gmax):
        raise SystemExit(f"GRPO GRADIENTS DISAGREE: max|Δ|/max|g| = {err:.2e}")
    return err


def tiny_compile_probe():
    """Run in a subprocess: time the setup (compiles loglik_batch), then the first (compiling) step at a
    tiny size. Prints one JSON line."""
    t0 = time.perf_counter()
    p = make_problem(8, 4, 4, 4, 0)
    t1 = time.perf_counter()
    OnlinePG(p["X"], p["Ystar"], p["w0"], 0).step()
    print(json.dumps(dict(setup_s=t1 - t0, first_step_s=time.perf_counter() - t1)))


def compile_times():
    """Cold (fresh NUMBA_CACHE_DIR) and warm (same dir again) start of the onlinepg kernels."""
    code = ("import time; t0 = time.perf_counter(); import numba, numpy; t1 = time.perf_counter(); "
            "import onlinepg.kernels; t2 = time.perf_counter(); "
            "print('{\"import_numba_s\": %r, \"import_kernels_s\": %r}' % (t1 - t0, t2 - t1)); "
            "from bench.kernels import tiny_compile_probe; tiny_compile_probe()")
    out = {}
    with tempfile.TemporaryDirectory(prefix="onlinepg-bench-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"compile-time subprocess ({label}) failed:\n{res.stderr}")
            out[label] = {"process_wall_s": time.perf_counter() - t0}
            for line in res.stdout.strip().splitlines():
                out[label].update(json.loads(line))
    return out


def check_gradients(p, torch_mod):
    """From w0 and onlinepg's sampled Y, compare the peers' ascent gradients with the fused step's."""
    ref = OnlinePG(p["X"], p["Ystar"], p["w0"], seed=12345)
    ref.step_phases()                   # the update moves ref.w, not the g it computed from w0
    g, gmax = ref.g, np.abs(ref.g).max()
    if gmax == 0.0:
        raise SystemExit("gradient check: onlinepg gradient is identically zero (all advantages 0?)")
    A = ref.adv
    B, N = ref.Y.shape
    gn = peers_numpy.score_grad(p["X"], ref.Y, peers_numpy.probs(p["w0"], p["X"], ref.Y), A, 1.0 / (B * N))
    res = {"numpy_max_abs_err_over_max": float(np.abs(gn - g).max() / gmax)}
    ok = np.allclose(gn, g, rtol=1e-9, atol=1e-12 * gmax)
    if torch_mod.HAVE_TORCH:
        gt = torch_mod.TorchPG(p["X"], p["Ystar"], p["w0"], seed=0).ascent_grad(ref.Y, A)
        res["torch_max_abs_err_over_max"] = float(np.abs(gt - g).max() / gmax)
        res["torch_rel_l2_err"] = float(np.linalg.norm(gt - g) / np.linalg.norm(g))
        # float32: element-wise rtol 1e-4, with an absolute floor of 1e-4·max|g| for entries that cancel
        ok &= np.allclose(gt, g, rtol=1e-4, atol=1e-4 * gmax)
    if not ok:
        raise SystemExit(f"GRADIENTS DISAGREE: {res}")
    return res


def machine_info(torch_mod):
    model = platform.processor() or "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return dict(cpu=model, cores=os.cpu_count(), usable_cores=usable, numba=numba.__version__,
                numba_threads=numba.get_num_threads(), numpy=np.__version__, python=platform.python_version(),
                torch=torch_mod.torch.__version__ if torch_mod.HAVE_TORCH else None)


def measure(impls, reps, warm):
    """Interleaved rounds; returns (seconds per timed step, success fractions, onlinepg phases, others' cores)."""
    times, acc = {key: [] for key in impls}, {key: [] for key in impls}
    busy0, own0, wall0 = system_busy_s(), time.process_time(), time.perf_counter()
    for impl in impls.values():
        for _ in range(2):
            impl.step()
    for _ in range(reps):
        for key, impl in impls.items():       # interleaved so drift (thermal, neighbours) hits all alike
            # Thread pools left spinning by the previous implementation (OpenBLAS after NumPy, libgomp after
            # onlinepg/torch) steal a core from the next one: torch measured 170 ms/step right after NumPy
            # vs 108 ms on its own. Sleeping them off is no cure: after an idle, onlinepg's two-thread
            # regions ran at ~15 ms instead of 10 ms for a while. So each implementation first runs untimed
            # steps for `warm` seconds, then one timed step: a training loop's steady state.
            t0 = time.perf_counter()
            impl.step()
            while time.perf_counter() - t0 < warm:
                impl.step()
            # every timed step starts from w0 (≈ half the batch correct), however many untimed steps each
            # implementation managed: no implementation is timed on an easier, further-trained policy
            impl.reset()
            t0 = time.perf_counter()
            acc[key].append(float(impl.step()))
            times[key].append(time.perf_counter() - t0)
    phases = []
    for _ in range(reps):
        impls["onlinepg"].reset()
        phases.append(impls["onlinepg"].step_phases())
    # Parallel regions stall for a scheduler slice whenever another process holds a core, so CPU used by
    # others during the rounds is reported with the figures rather than silently absorbed.
    busy1, own1, wall1 = system_busy_s(), time.process_time(), time.perf_counter()
    others = None if busy0 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)
    breakdown = {ph: 1e3 * statistics.median(r[ph] for r in phases) for ph in phases[0]}
    return times, acc, breakdown, others


def report_rows(impls, times, acc, tokens, torch_mod):
    """Print the table; return the per-implementation figures for --json."""
    print(f"\n{'implementation':<30}{'median ms/step':>15}{'min..max ms':>19}{'tokens/s':>12}"
          f"{'x onlinepg':>12}{'target':>9}  verdict   success range")
    base, results = statistics.median(times["onlinepg"]), {}
    for key in ("onlinepg", "numpy", "torch"):
        if key not in impls:
            print(f"{'pytorch (ref. code, float32)':<30}{torch_mod.SKIP_MESSAGE}")
            results[key] = {"skipped": torch_mod.SKIP_MESSAGE}
            continue
        med, target = statistics.median(times[key]), TARGETS.get(key)
        ratio = med / base
        verdict = None if target is None else ("PASS" if ratio >= target else "MISS")
        lo, hi = 1e3 * min(times[key]), 1e3 * max(times[key])
        print(f"{impls[key].name:<30}{1e3 * med:>15.2f}{f'{lo:.1f}..{hi:.1f}':>19}{tokens / med:>12.3g}"
              f"{ratio:>11.1f}x{'' if target is None else f'>={target:.0f}x':>9}  {verdict or '':<8}"
              f"  {min(acc[key]):.2f}..{max(acc[key]):.2f}")
        results[key] = dict(median_ms=1e3 * med, min_ms=lo, max_ms=hi, tokens_per_s=tokens / med,
                            ratio_vs_onlinepg=ratio, target=target, verdict=verdict,
                            samples_ms=[1e3 * t for t in times[key]], success=acc[key])
    return results


def run(args):
    from . import peers_torch     # imported here so the compile-time subprocesses never load torch
    B, N, d, k = (64, 16, 32, 32) if args.quick else (args.B, args.N, 32, 32)
    reps = args.reps or (3 if args.quick else 10)
    info, load0 = machine_info(peers_torch), os.getloadavg()[0]
    print(f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), python {info['python']}, "
          f"numpy {info['numpy']}, numba {info['numba']} ({info['numba_threads']} threads), torch "
          + (f"{info['torch']} (2 threads)" if info["torch"] else "not installed"))
    print(f"shape: bigram features, B={B} contexts, N={N} tokens, d={d}, k={k}, D={d * k + k * k}; "
          f"{B * N} tokens/step; 2 warm-up steps each, then {reps} interleaved rounds of "
          f"[untimed steps for {args.warm:g} s, then 1 timed step] per implementation")
    p = make_problem(B, N, d, k, args.seed)
    print(f"start: w0 = {p['beta']:.3f}·teacher + 0.05·N(0,1), mean p_w0(y*|x) = {p['success0']:.3f} "
          f"(so advantages are nonzero and no gradient work is skipped)")
    gc = check_gradients(p, peers_torch)
    print(f"gradients agree: numpy vs onlinepg max|Δ|/max|g| = {gc['numpy_max_abs_err_over_max']:.1e} (float64, "
          "rtol 1e-9); " + (f"torch vs onlinepg = {gc['torch_max_abs_err_over_max']:.1e} (float32, rtol 1e-4)"
                            if peers_torch.HAVE_TORCH else "torch: skipped"))
    print(f"numba threading layer: {numba.threading_layer()}")

    impls = {"onlinepg": OnlinePG(p["X"], p["Ystar"], p["w0"], args.seed + 1),
             "numpy": peers_numpy.NumpyPG(p["X"], p["Ystar"], p["w0"], args.seed + 2, LR)}
    if peers_torch.HAVE_TORCH:
        impls["torch"] = peers_torch.TorchPG(p["X"], p["Ystar"], p["w0"], args.seed + 3, LR, threads=2)
    times, acc, breakdown, others = measure(impls, reps, args.warm)
    results = report_rows(impls, times, acc, B * N, peers_torch)
    if others is None:
        print("\nload: unknown (no /proc/stat)")
    else:
        warn = "  WARNING: machine not idle, figures are pessimistic for the parallel implementations"
        print(f"\nload: other processes kept {others:.2f} of {info['usable_cores']} cores busy during the "
              f"rounds (load average before {load0:.2f})" + (warn if others > 0.1 else ""))
    print("onlinepg step breakdown (median ms): " + ", ".join(f"{ph} {v:.2f}" for ph, v in breakdown.items())
          + "  [sample_grad = pg_step (sample, reward, baseline, gradient), update = apply_update]")

    comp = None
    if args.compile is False or (args.compile is None and args.quick):
        why = "--no-compile" if args.compile is False else "--quick; add --compile"
        print(f"onlinepg JIT compile time: not measured ({why})")
    else:
        comp = compile_times()
        c, w = comp["cold"], comp["warm"]
        print("onlinepg JIT compile (subprocess, fresh NUMBA_CACHE_DIR, tiny step B=8 N=4 d=k=4): import numba+numpy "
              f"{c['import_numba_s']:.2f} s, import kernels {c['import_kernels_s']:.2f} s, first step "
              f"{c['first_step_s']:.2f} s (+ loglik_batch setup {c['setup_s']:.2f} s), "
              f"process {c['process_wall_s']:.1f} s"
              f"\nonlinepg warm start (same cache dir again): import kernels {w['import_kernels_s']:.2f} s, "
              f"first step {w['first_step_s']:.3f} s, process {w['process_wall_s']:.1f} s")
    if args.json:
        shape = dict(B=B, N=N, d=d, k=k, reps=reps, warmup=2, seed=args.seed, warm_s=args.warm)
        Path(args.json).write_text(json.dumps(dict(
            machine=info, shape=shape, start=dict(beta=p["beta"], mean_success=p["success0"]),
            gradient_check=gc, results=results, onlinepg_breakdown_ms=breakdown, compile=comp,
            other_processes_busy_cores=others, loadavg_1min_before=load0,
            torch_dtype="float32", torch_threads=2 if peers_torch.HAVE_TORCH else None), indent=2))
        print(f"wrote {args.json}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="interleaved rounds (default 10; 3 with --quick)")
    ap.add_argument("--quick", action="store_true", help="B=64, N=16, 3 rounds: a smoke run in seconds")
    ap.add_argument("--B", type=int, default=1024, help="batch of contexts (default 1024)")
    ap.add_argument("--N", type=int, default=128, help="response length (default 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warm", type=float, default=0.2, help="seconds of untimed steps before each timed step, so "
                    "the previous implementation's spinning thread pools have gone quiet (default 0.2)")
    ap.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="time the cold/warm JIT compile in subprocesses (~10 s; default on, off with --quick)")
    run(ap.parse_args(argv))


if __name__ == "__main__":
    main()
