"""Section 6 — end to end: `onlinepg experiment fig1 --scale full` against the PyTorch reference code's projection.

    python -m bench.e2e [--quick] [--seeds S]

* **onlinepg**: the wall time of ``onlinepg experiment fig1 --scale full --seeds S`` in a subprocess (everything the
  command does: the supervised base, the ORM and PRM arms with their evaluations and tracked centres, Parquet
  writes, figures, results.md). The kernel cache is warmed first by the same command run once before (at the
  scale timed: a smaller scale leaves the parallel twins of the context and teacher kernels to compile inside the
  timed run, ~2.5 s), so the figure is the run's work, not a compile time; the peer's projection likewise leaves
  out its start-up.
* **PyTorch projection**: the reference-style peer (``bench.peers_torch``, written after the authors' code: float32,
  two threads) times one step of each kind at the full scale's shapes — a supervised step at the base batch, an
  ORM step (batch-mean baseline) and a PRM step (per-prefix ±1 reward) at the post-training batch, the exact
  test-set log-likelihood of the held-out contexts and of the tracked centres — and the projection is
  seeds × (base_steps·t_sup + steps·(t_orm + t_prm) + 2·steps·t_track + 2·evals·t_eval), with the evaluations of
  the full scale's schedule. The peer's RNG and optimiser work are inside its step times; its process start-up,
  file writes and figures are not, so the projection favours the peer.
* The ratio is projection / onlinepg wall time, both measured in this one run. ``--quick``: the small scale for
  both, one repetition per step kind.
"""
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .report import PRISTINE_ENV, LoadMeter, Section, verdict

ROOT = Path(__file__).resolve().parent.parent
TARGET = 60.0


def fig1_params(scale):
    from onlinepg.experiments.common import load_spec
    spec = load_spec("fig1")
    params = {**spec[scale]}
    return params, params.pop("seeds", spec["experiment"].get("seeds", 1))


def evals(p):
    """Evaluations of the test set per arm on fig1's schedule: every eval_every steps, the log-spaced extra points,
    and step 0 (an upper bound: log-spaced points that fall on the regular grid are counted twice)."""
    return p["steps"] // p["eval_every"] + p["eval_log_points"] + 1


def run_fig1(scale, seeds, log):
    """Wall seconds of `onlinepg experiment fig1 --scale SCALE --seeds S` in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="onlinepg-bench-fig1-") as tmp:
        cmd = [sys.executable, "-m", "onlinepg.cli", "experiment", "fig1", "--scale", scale, "--seeds", str(seeds),
               "--out", f"{tmp}/out", "--no-progress"]
        log("[6] " + " ".join(cmd[2:]))
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=tmp, env=PRISTINE_ENV, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(f"fig1 failed:\n{res.stderr[-3000:]}")
    return wall


def torch_step_times(p, reps):
    """Median seconds of the reference-style PyTorch peer's steps at fig1's shapes (see the module docstring)."""
    import torch
    import torch.nn.functional as F
    from .peers_numpy import teacher_responses
    from .peers_torch import BigramPolicy
    torch.set_num_threads(2)
    torch.manual_seed(0)
    d, k, N = p["d"], p["k"], p["N"]
    rng = np.random.default_rng(0)
    W1s, W2s = rng.standard_normal((k, d)), rng.standard_normal((k, k))

    def batch(B):
        X = rng.normal(size=(B, d))
        return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(teacher_responses(X, W1s, W2s, N))

    model = BigramPolicy(d, k, 0.1 * rng.standard_normal(d * k + k * k))
    opt = torch.optim.Adagrad(model.parameters(), lr=p["lr"])

    def logp_of(x, y):
        return F.log_softmax(model.logits(x, y), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)

    def sample(x):
        ys, prev = [], None
        for _ in range(N):
            prev = model.sample_next(x, prev)
            ys.append(prev)
        return torch.stack(ys, dim=1)

    def update(loss):
        opt.zero_grad()
        loss.backward()
        opt.step()

    def supervised(x, ystar):
        update(-logp_of(x, ystar).mean())

    def orm(x, ystar):
        y = sample(x)
        r = torch.where((y == ystar).all(dim=1), 1.0, -1.0)
        update(-((r - r.mean())[:, None] * logp_of(x, y)).mean())

    def prm(x, ystar):
        y = sample(x)
        ok = torch.cumprod((y == ystar).to(torch.int64), dim=1)
        update(-(torch.where(ok > 0, 1.0, -1.0) * logp_of(x, y)).mean())

    @torch.no_grad()
    def evaluate(x, ystar):
        return logp_of(x, ystar).sum(dim=1).exp().mean().item()

    kinds = {"supervised": (supervised, p["base_batch"]), "orm": (orm, p["batch"]), "prm": (prm, p["batch"]),
             "eval": (evaluate, p["test_contexts"]), "track": (evaluate, p["centres"])}
    out = {}
    for name, (fn, B) in kinds.items():
        x, ystar = batch(B)
        fn(x, ystar)                       # one untimed step
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn(x, ystar)
            ts.append(time.perf_counter() - t0)
        out[name] = statistics.median(ts)
    return out


def projection(p, seeds, t):
    per_seed = (p["base_steps"] * t["supervised"] + p["steps"] * (t["orm"] + t["prm"])
                + 2 * p["steps"] * t["track"] + 2 * evals(p) * t["eval"])
    return seeds * per_seed


def run(quick=False, log=print, seeds=1):
    from .peers_torch import HAVE_TORCH, SKIP_MESSAGE
    scale = "small" if quick else "full"
    p, spec_seeds = fig1_params(scale)
    seeds = 1 if quick else seeds
    sec = Section(6, f"End to end: fig1 --scale {scale}",
                  setup=f"`onlinepg experiment fig1 --scale {scale} --seeds {seeds}` (the spec's default: "
                        f"{spec_seeds} seed(s); the work is linear in seeds) timed whole in a subprocess after a "
                        f"cache-warming run of the same command, against the reference-style PyTorch peer's step times at the "
                        f"same shapes projected to the same work: base {p['base_steps']} supervised steps × batch "
                        f"{p['base_batch']}; ORM and PRM {p['steps']} steps × batch {p['batch']}, N = {p['N']}, "
                        f"d = {p['d']}, k = {p['k']}; {evals(p)} test-set evaluations of {p['test_contexts']} "
                        f"contexts and the {p['centres']} tracked centres every step, per arm "
                        "(bench/e2e.py docstring).")
    names = (f"onlinepg: fig1 --scale {scale}, {seeds} seed(s), whole command",
             "PyTorch reference-style peer, projected to the same work")
    if not HAVE_TORCH:        # the ratio is the point of the section: without the peer, nothing is run
        for name in names:
            sec.skip(name, SKIP_MESSAGE.removeprefix("skipped (").removesuffix(")"))
        return sec
    with LoadMeter() as meter:
        run_fig1(scale, 1, log)                                      # warms the kernel cache (not timed)
        wall = run_fig1(scale, seeds, log)
        log("[6] PyTorch peer: one step of each kind at fig1's shapes")
        t = torch_step_times(p, 1 if quick else 3)
    sec.load = meter.as_dict()
    proj = projection(p, seeds, t)
    ratio = proj / wall
    sec.add(names[0], f"{wall:.1f} s",
            data=dict(wall_s=wall, seeds=seeds))
    sec.add(names[1], f"{proj:.0f} s",
            f"onlinepg {ratio:.1f}× faster", f"≥ {TARGET:.0f}×", verdict(ratio >= TARGET),
            note="step medians (ms): " + ", ".join(f"{name} {1e3 * v:.1f}" for name, v in t.items())
                 + ("" if ratio >= TARGET else ". Why: besides its 2·steps PG steps (section 1), the run draws "
                    "every step's 1024 mixture contexts (1024·d normals) and teacher responses in kernels, tracks the "
                    "centres' exact likelihood every step, and pays start-up and plotting once; `python -m cProfile "
                    "-m onlinepg.cli experiment fig1 --scale full --seeds 1` splits the time"),
            data=dict(projection_s=proj, step_s=t, ratio=ratio, target=TARGET))
    return sec


def main(argv=None):
    import argparse
    from .report import section_markdown
    ap = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small scale, one repetition per step kind")
    ap.add_argument("--seeds", type=int, default=1, help="teacher seeds of the full run (default 1)")
    args = ap.parse_args(argv)
    print(section_markdown(run(args.quick, seeds=args.seeds)))


if __name__ == "__main__":
    main()
