"""onlinepg against its peers, in one run, with the machine's limit beside them.

    python -m bench [--quick] [--out DIR] [--sections 1,2,3,4,5,6] [--wait-idle SECONDS]
    onlinepg bench  (the same)

Sections: 1 the PG step at the paper's shape vs NumPy and PyTorch (``bench.kernels``); 2 the streaming N = 1
bandit stream vs Vowpal Wabbit, River and scikit-learn (``bench.bandit``); 3 scaling in N, k, d, batch and
cores (``bench.scaling``); 4 the CPU's limit for the innermost lane loop and the share the step reaches
(``bench.limit``); 5 cold compile, warm start-up and peak RSS (``bench.startup``); 6 ``onlinepg experiment fig1
--scale full`` end to end vs the PyTorch reference code's projection (``bench.e2e``). Writes ``DIR/bench.json``
(every figure, raw samples included) and ``DIR/bench.md`` (the tables), and prints the tables. A peer that is
not installed gets a ``skipped (reason)`` row; a section that fails gets an ERROR row and the exit status 1.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

from .report import LoadMeter, Section, as_json, document, human, verdict

TITLES = {1: "Policy-gradient step, paper shape (bigram, N = 128, d = k = 32, batch 1024)",
          2: "Streaming bandit multiclass, N = 1", 3: "Scaling", 4: "The limit", 5: "Start-up and memory",
          6: "End to end: fig1"}
PG_TARGETS = {"numpy": 30.0, "torch": 50.0}
IDLE_LOAD = 0.5          # 1-minute load average regarded as a quiet machine for --wait-idle


def pg_step_section(quick, log):
    """Section 1 through bench.kernels' implementations, gradient gate and interleaved protocol."""
    from . import kernels as KB
    from . import peers_numpy, peers_torch
    B, N, d, k = (64, 16, 32, 32) if quick else (1024, 128, 32, 32)
    reps, warm = (3, 0.05) if quick else (10, 0.2)
    sec = Section(1, TITLES[1] if not quick else f"Policy-gradient step (--quick: B = {B}, N = {N}, d = k = 32)",
                  setup=f"One on-policy step: sample, ±1 outcome reward with batch-mean baseline, gradient of "
                        f"−mean A·log p, Adagrad 0.1; B = {B}, N = {N}, d = k = {k} ({B * N:,} tokens/step); "
                        f"gradients checked equal first; {reps} interleaved rounds of [untimed steps for {warm:g} s, "
                        "one timed step from the same start weights], medians (protocol: bench/README.md).")
    p = KB.make_problem(B, N, d, k, 0)
    gc = KB.check_gradients(p, peers_torch)       # exits (SystemExit) if the three gradients disagree
    impls = {"onlinepg": KB.OnlinePG(p["X"], p["Ystar"], p["w0"], 1),
             "numpy": peers_numpy.NumpyPG(p["X"], p["Ystar"], p["w0"], 2, KB.LR)}
    if peers_torch.HAVE_TORCH:
        impls["torch"] = peers_torch.TorchPG(p["X"], p["Ystar"], p["w0"], 3, KB.LR, threads=2)
    log(f"[1] PG step: {', '.join(impls)}; {reps} interleaved rounds")
    with LoadMeter() as meter:
        times, acc, breakdown, _ = KB.measure(impls, reps, warm)
    sec.load = meter.as_dict()
    med = {key: statistics.median(v) for key, v in times.items()}
    names = {"onlinepg": "onlinepg (Numba, float64)", "numpy": "NumPy, vectorised over the batch (float64)",
             "torch": "PyTorch CPU, reference-code style (float32, 2 threads)"}
    for key in ("onlinepg", "numpy", "torch"):
        if key not in impls:
            sec.add(names[key], target=f"≥ {PG_TARGETS[key]:.0f}×",
                    skipped=peers_torch.SKIP_MESSAGE.removeprefix("skipped (").removesuffix(")"))
            continue
        m = med[key]
        ratio = m / med["onlinepg"]
        target = PG_TARGETS.get(key)
        sec.add(names[key], f"{1e3 * m:.2f} ms/step · {B * N / m:.3g} tokens/s",
                "" if key == "onlinepg" else f"onlinepg {ratio:.1f}× faster",
                f"≥ {target:.0f}×" if target else "", verdict(ratio >= target) if target else "",
                note=f"min..max {1e3 * min(times[key]):.1f}..{1e3 * max(times[key]):.1f} ms",
                data=dict(median_s=m, samples_s=times[key], success=acc[key], ratio=ratio, target=target))
    sec.notes.append("onlinepg step breakdown (median ms): " + ", ".join(f"{ph} {v:.2f}" for ph, v in breakdown.items())
                     + f". Gradient agreement: NumPy {gc['numpy_max_abs_err_over_max']:.1e}"
                     + (f", PyTorch {gc['torch_max_abs_err_over_max']:.1e}" if "torch_max_abs_err_over_max" in gc
                        else "") + " (max|Δ| / max|g|).")
    grpo_rows(sec, p, quick, reps, warm, log)
    return sec


def grpo_rows(sec, p, quick, reps, warm, log):
    """Section 1's GRPO rows: the GRPO family's step (docs/theory.md §4.9) at the same shape, onlinepg against a
    TRL-style PyTorch step, interleaved as the PG rows (no target: reported)."""
    from . import kernels as KB
    from . import peers_torch
    G, mu, beta = 8, 2, 0.04
    q = KB.grpo_problem(p, G)
    err = KB.check_grpo_gradients(q, peers_torch, G)
    impls = {"onlinepg": KB.OnlineGRPO(q["X"], q["Ystar"], q["w0"], 4, G=G, mu=mu, beta=beta)}
    if peers_torch.HAVE_TORCH:
        impls["torch"] = peers_torch.TorchGRPO(q["X"], q["Ystar"], q["w0"], 5, KB.LR, threads=2, G=G, mu=mu,
                                               beta=beta)
    log(f"[1] GRPO step: {', '.join(impls)}; {reps} interleaved rounds")
    times, acc, _, _ = KB.measure(impls, reps, warm)
    med = {key: statistics.median(v) for key, v in times.items()}
    B, N = q["Ystar"].shape
    what = (f"GRPO step (G = {G}, μ = {mu} updates, β = {beta}, ε 0.2/0.28, token-mean loss, Adagrad 0.1): ")
    for key, name in (("onlinepg", "onlinepg (Numba, float64)"),
                      ("torch", "PyTorch CPU, TRL GRPOTrainer-style (float32, 2 threads)")):
        if key not in impls:
            sec.add(what + name, skipped=peers_torch.SKIP_MESSAGE.removeprefix("skipped (").removesuffix(")"))
            continue
        m = med[key]
        ratio = m / med["onlinepg"]
        sec.add(what + name, f"{1e3 * m:.2f} ms/step · {B * N / m:.3g} tokens/s",
                "" if key == "onlinepg" else f"onlinepg {ratio:.1f}× faster", "", "",
                note=f"min..max {1e3 * min(times[key]):.1f}..{1e3 * max(times[key]):.1f} ms",
                data=dict(median_s=m, samples_s=times[key], success=acc[key], ratio=ratio))
    sec.notes.append("GRPO rows: B/G contexts × G samples of the same problem; first-iteration gradient agreement "
                     + (f"{err:.1e} (max|Δ| / max|g|, PyTorch float32)" if err is not None else "not checked (no "
                        "torch)") + "; the KL, clip and later iterations are checked against NumPy in "
                     "tests/test_kernels_grpo.py.")


def run_section(number, quick, log):
    from . import bandit, e2e, limit, scaling, startup
    runners = {1: pg_step_section, 2: bandit.run, 3: scaling.run, 4: limit.run, 5: startup.run, 6: e2e.run}
    t0 = time.perf_counter()
    try:
        sec = runners[number](quick, log)
    except (Exception, SystemExit) as exc:       # SystemExit: bench.kernels' gradient gate
        log(traceback.format_exc())
        sec = Section(number, TITLES[number])
        sec.add("section failed", f"{type(exc).__name__}: {exc}", verdict="ERROR")
    sec.seconds = time.perf_counter() - t0
    return sec


def machine():
    """CPU, cores, versions of everything measured (a peer's version, or None when it is not installed)."""
    import numba
    import numpy as np
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = None
    versions = {}
    from importlib import metadata
    for dist in ("torch", "vowpalwabbit", "river", "scikit-learn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return dict(cpu=cpu, cores=os.cpu_count(), memory_gib=mem, python=platform.python_version(),
                numpy=np.__version__, numba=numba.__version__, numba_threads=numba.get_num_threads(), **versions)


def _row(sections, number, phrase):
    sec = next((s for s in sections if s.number == number), None)
    return None if sec is None else next((r for r in sec.rows if phrase in r.what and not r.skipped), None)


def miss_notes(sections, info):
    """Say why each MISS happened and what would close it, from the figures of this very run."""
    speed, floor = _row(sections, 2, "rounds/s vs Vowpal Wabbit"), _row(sections, 4, "N = 1 bandit round")
    if speed is not None and speed.verdict == "MISS":
        pg = _row(sections, 2, "onlinepg PG").data["rounds_per_second"]
        vw = _row(sections, 2, "Vowpal Wabbit").data["rounds_per_second"]
        speed.note = (f"VW's C++ core behind one Python call a round runs {human(vw)} rounds/s; onlinepg's generic "
                      f"per-round chunk driver (kernels/rounds) takes {1e9 / pg:.0f} ns a round")
        if floor is not None:
            f = 1e9 / floor.data["ns_per_round_floor"]
            speed.note += (f", against {floor.data['ns_per_round_floor']:.0f} ns for the same learner fused for N = 1 "
                           f"(section 4: xᵀW1 once, rank-one update): {human(f)} rounds/s = {f / vw:.0f}× VW. "
                           + ("A fused N = 1 path in the per-round kernels would close it (bench/limit.py's docstring says what "
                              "the generic round repeats)" if f / vw >= 20 else
                              "Even fused, the round stays below 20× VW on this machine"))
    for sec in sections:
        others = sec.load.get("other_processes_busy_cores") or 0.0
        for r in sec.rows:
            if r.verdict == "MISS" and others > 0.1:
                r.note = (f"measured while other processes kept {others:.2f} of {info['cores']} cores busy; "
                          "rerun on a quiet machine" + (f". {r.note}" if r.note else ""))


def wait_idle(limit_s, log):
    """Wait (up to ``limit_s``) for the 1-minute load average to drop below IDLE_LOAD."""
    t0 = time.time()
    while os.getloadavg()[0] > IDLE_LOAD and time.time() - t0 < limit_s:
        log(f"waiting for a quiet machine: load average {os.getloadavg()[0]:.2f} > {IDLE_LOAD}")
        time.sleep(15)
    return os.getloadavg()[0]


def main(argv=None, prog="python -m bench"):
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run(ap.parse_args(argv), prog)


def add_arguments(ap):
    from onlinepg.commands._bench_options import add_arguments as options   # one definition with onlinepg bench
    options(ap)


def run(args, prog="python -m bench"):
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731 - progress to stderr, tables to stdout
    numbers = sorted({int(s) for s in args.sections.split(",") if s.strip()})
    if not numbers or any(n not in TITLES for n in numbers):
        print(f"{prog}: error: --sections takes numbers from 1..6, got {args.sections!r}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/bench-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    load_before = wait_idle(args.wait_idle, log) if args.wait_idle else os.getloadavg()[0]
    info = machine()
    started = datetime.datetime.now().astimezone()
    with LoadMeter() as total:
        sections = [run_section(n, args.quick, log) for n in numbers]
    miss_notes(sections, info)
    command = prog + (" --quick" if args.quick else "") + (f" --sections {args.sections}" if len(numbers) < len(TITLES) else "")
    header = ["## Benchmarks" + (" (--quick: small sizes, not the reference figures)" if args.quick else ""), "",
              f"`{command}` on {started:%Y-%m-%d %H:%M %Z}: {info['cpu']}, {info['cores']} cores"
              + (f", {info['memory_gib']:.0f} GiB" if info["memory_gib"] else "")
              + f"; Python {info['python']}, NumPy {info['numpy']}, Numba {info['numba']} ({info['numba_threads']} "
              "threads); peers: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in info.items()
                                              if k in ("torch", "vowpalwabbit", "river", "scikit-learn"))
              + f". Load average before: {load_before:.2f}; other processes kept "
              + (f"{total.others:.2f}" if total.others is not None else "unknown")
              + f" cores busy on average over the {total.seconds:.0f} s run."]
    md = document(sections, header)
    (out / "bench.md").write_text(md + "\n")
    (out / "bench.json").write_text(json.dumps(dict(
        command=command, date=started.isoformat(), quick=args.quick, machine=info, load=total.as_dict(),
        loadavg_before=load_before, sections=as_json(sections)), indent=2, default=str))
    print(md)
    print(f"wrote {out / 'bench.md'} and {out / 'bench.json'}")
    return 1 if any(r.verdict == "ERROR" for s in sections for r in s.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
