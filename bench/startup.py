"""Section 5 — start-up and memory: cold compile of the whole engine, warm (cached) start-up, peak RSS of a
long run.

    python -m bench.startup [--quick]

* **Cold**: a fresh Python process with an empty ``NUMBA_CACHE_DIR`` imports onlinepg and plays one tiny run
  of every algorithm through ``onlinepg.engine.run`` (``onlinepg.warmup.TOUR``: per-round sgd, pg, best_of_m,
  pg_process in its three variants, perceptron; batched sgd and pg_batch with outcome and process rewards, at
  batches below and above the serial/parallel threshold; teacher tasks with Rademacher and mixture contexts
  and a pre-trained base; a cells task with a prescribed-likelihood base). Every kernel the engine can call
  is compiled on the way. Then it plays the same runs again, which now only repeat their own work (a few
  hundred rounds, evaluations, Parquet writes). The figure is the process's wall time, interpreter start and
  exit included, less that work counted twice (once for the repeat, once inside the first pass): what it
  costs to get from nothing to every kernel ready.
* **Warm**: the same process again with the same cache directory (every kernel loads from the cache): the
  start-up a user sees, import + cached kernels, measured the same way.
* **Peak RSS**: a bandit run (``bench.stream``'s config: N = 1, k = 10, d = 20, trace every 100th round) at
  10^6 and 10^7 rounds, each in a fresh process that reports its own high-water mark ``VmHWM`` from
  /proc/self/status. Not ``ru_maxrss``: Linux carries the parent's peak RSS into a forked child, so a child of
  this (large) bench process would report the bench's own peak (1.2 GiB here) instead of the run's.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .report import PRISTINE_ENV, LoadMeter, Section, verdict

ROOT = Path(__file__).resolve().parent.parent
COLD_TARGET_S, WARM_TARGET_S = 45.0, 1.5          # issue 22's targets
DEFAULT_JOB_COLD_TARGET_S = 12.0
TOP_COMPILERS = 8


def compile_clock():
    """A Numba compile-event listener, registered: ``.seconds`` maps each compiled function (module.qualname) to
    its exclusive compile seconds (its own typing, lowering and LLVM time, the functions it compiled on the way
    excluded), ``.count`` to how many signatures it compiled. Numba's own overloads are counted too."""
    import collections
    from numba.core import event

    class Clock(event.Listener):
        def __init__(self):
            self.stack, self.seconds, self.count = [], collections.Counter(), collections.Counter()

        def on_start(self, ev):
            f = ev.data["dispatcher"].py_func
            self.stack.append([f"{f.__module__}.{f.__qualname__}", time.perf_counter(), 0.0])

        def on_end(self, ev):
            name, t0, inner = self.stack.pop()
            dt = time.perf_counter() - t0
            self.seconds[name] += dt - inner
            self.count[name] += 1
            if self.stack:
                self.stack[-1][2] += dt

    clock = Clock()
    event.register("numba:compile", clock)
    return clock


def _tour_configs():
    from onlinepg.warmup import tour_configs    # imported late: probe() times the import of onlinepg
    return tour_configs()


def probe():
    """Run in the measured subprocess: import, the whole tour, then the tour again (every kernel already
    loaded: the runs' own work). Prints one JSON line of timings."""
    t0 = time.perf_counter()
    clock = compile_clock()
    import onlinepg
    import onlinepg.engine  # noqa: F401 - the import is part of what is timed
    from onlinepg.warmup import rows_decide
    t1 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp, rows_decide():
        for i, (name, cfg) in enumerate(_tour_configs()):
            s0 = time.perf_counter()
            onlinepg.run(cfg, f"{tmp}/{i}")
            runs.append(dict(name=name, seconds=time.perf_counter() - s0))
        t2 = time.perf_counter()
        for i, (name, cfg) in enumerate(_tour_configs()):
            onlinepg.run(cfg, f"{tmp}/again-{i}")
        t3 = time.perf_counter()
    top = [dict(name=n.replace("onlinepg.kernels.", ""), seconds=v, signatures=clock.count[n])
           for n, v in clock.seconds.most_common(TOP_COMPILERS)]
    print(json.dumps(dict(import_s=t1 - t0, runs=runs, tour_s=t2 - t1, tour_again_s=t3 - t2, exit_t=t3,
                          compile_s=sum(clock.seconds.values()), top_compilers=top)))


def _subprocess(cache=None):
    """The probe in a fresh interpreter; ``cache``: its NUMBA_CACHE_DIR (None: the environment's own)."""
    env = dict(PRISTINE_ENV)
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", "from bench.startup import probe; probe()"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"start-up probe failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    # start-up = the whole process less the second tour (which only repeats the runs' own work) less that
    # same work inside the first tour: interpreter start, imports, kernel compilation or cache loading, exit
    out.update(process_s=wall, startup_s=wall - 2 * out["tour_again_s"])
    return out


def peak_rss_mib(rounds):
    """Peak RSS (MiB) of a fresh process running ``rounds`` rounds of bench.stream's bandit config."""
    from .stream import BANDIT, _cfg
    code = ("import json, resource, tempfile, onlinepg\n"
            f"cfg = json.loads({json.dumps(json.dumps(_cfg(BANDIT, rounds, 100)))})\n"
            "with tempfile.TemporaryDirectory() as t: onlinepg.run(cfg, t + '/r')\n"
            "try:\n"
            "    hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
            "except (OSError, StopIteration):\n"
            "    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(hwm)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=PRISTINE_ENV)
    if res.returncode != 0:
        raise RuntimeError(f"peak-RSS run failed:\n{res.stderr[-3000:]}")
    return int(res.stdout.split()[-1]) / 1024.0


def default_job(cache=None):
    """Wall seconds of `onlinepg run` (the default job, no arguments but a fresh --out) in a fresh process with
    NUMBA_CACHE_DIR ``cache`` (None: the environment's own)."""
    env = dict(PRISTINE_ENV)
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    with tempfile.TemporaryDirectory(prefix="onlinepg-bench-default-") as tmp:
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "run", "--out", f"{tmp}/run", "--no-progress"],
                             cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(f"the default job failed:\n{res.stderr[-3000:]}")
        summary = json.loads(Path(f"{tmp}/run/summary.json").read_text())
    return dict(wall_s=wall, run_wall_s=summary["wall_seconds"], rounds=summary["rounds"])


def warmup_command(cache):
    """Wall seconds of `onlinepg warmup` (the tour in one worker process per CPU) on NUMBA_CACHE_DIR ``cache``."""
    env = dict(PRISTINE_ENV, NUMBA_CACHE_DIR=cache)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "warmup"], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise RuntimeError(f"onlinepg warmup failed:\n{res.stderr[-3000:]}")
    return dict(wall_s=time.perf_counter() - t0, jobs=os.cpu_count())


def cold_warm():
    with tempfile.TemporaryDirectory(prefix="onlinepg-bench-cache-") as cache:
        return _subprocess(cache), _subprocess(cache)


def run(quick=False, log=print):
    n_mem = (10**4, 10**5) if quick else (10**6, 10**7)
    sec = Section(5, "Start-up and memory",
                  setup=f"Cold and warm: a fresh Python process (empty, then reused NUMBA_CACHE_DIR) imports "
                        f"onlinepg and plays {len(_tour_configs())} tiny runs covering every algorithm through "
                        "onlinepg.engine.run, then the same runs again; the figure is its wall time (interpreter "
                        "start and exit included) less the runs' own work. Peak RSS: VmHWM of a fresh process per "
                        "run length.")
    cold_name = "Cold compile of the whole engine (fresh cache: interpreter to every kernel ready)"
    with LoadMeter() as meter:
        if quick:
            # a cold compile takes 30-60 s, longer than the whole --quick smoke run may
            log("[5] warm start with the environment's own kernel cache (--quick: no cold compile)")
            cold, warm = None, _subprocess()
        else:
            log(f"[5] cold compile of the whole engine (fresh cache), then warm start ({len(_tour_configs())} tiny runs)")
            cold, warm = cold_warm()
        if quick:
            job_cold, job_warm = None, default_job()
        else:
            log("[5] the default job (`onlinepg run`) on a fresh kernel cache, then again")
            with tempfile.TemporaryDirectory(prefix="onlinepg-bench-cache-") as cache:
                job_cold, job_warm = default_job(cache), default_job(cache)
            log("[5] `onlinepg warmup` on a fresh kernel cache")
            with tempfile.TemporaryDirectory(prefix="onlinepg-bench-cache-") as cache:
                warmup = warmup_command(cache)
        log(f"[5] peak RSS of {n_mem[0]:.0e}- and {n_mem[1]:.0e}-round bandit runs")
        rss = {n: peak_rss_mib(n) for n in n_mem}
    sec.load = meter.as_dict()
    if cold is None:
        sec.add(cold_name, target=f"≤ {COLD_TARGET_S:.0f} s", skipped="--quick: it takes a minute or more; run without "
                "--quick")
    else:
        top = sorted(cold["runs"], key=lambda r: -r["seconds"])[:3]
        ok = cold["startup_s"] <= COLD_TARGET_S
        note = ("first runs that compiled most: " + ", ".join(f"{r['name']} {r['seconds']:.1f} s" for r in top)
                + f"; the runs' own work ({cold['tour_again_s']:.2f} s, timed by repeating them) excluded. "
                f"Numba's compile events: {cold['compile_s']:.1f} s compiling; the top compilers (own seconds, "
                "callees excluded): " + ", ".join(f"{c['name']} {c['seconds']:.1f} s"
                                                   + (f" ({c['signatures']} signatures)" if c["signatures"] > 1 else "")
                                                   for c in cold["top_compilers"]))
        if not ok:
            note += (". Why: this tour runs every algorithm, so it compiles every per-round chunk driver "
                     "(kernels/rounds, one per algorithm) and the batch kernels; Numba compiles on one core. "
                     "`onlinepg warmup` compiles them in parallel processes")
        sec.add(cold_name, f"{cold['startup_s']:.1f} s", target=f"≤ {COLD_TARGET_S:.0f} s", verdict=verdict(ok),
                note=note, data=cold)
    warm_what = "`onlinepg warmup` on a fresh cache: the same tour in one worker process per CPU, whole command"
    if quick:
        sec.add(warm_what, skipped="--quick: it compiles every kernel; run without --quick")
    else:
        sec.add(warm_what, f"{warmup['wall_s']:.1f} s", f"{cold['startup_s'] / warmup['wall_s']:.2f}× faster than "
                "the one-process cold compile" if cold else "", note=f"{warmup['jobs']} worker processes",
                data=warmup)
    sec.add("Warm start-up (import + cached kernels of every algorithm)"
            + (" (--quick: the environment's cache)" if quick else ""), f"{warm['startup_s']:.2f} s",
            target=f"≤ {WARM_TARGET_S:.1f} s", verdict=verdict(warm["startup_s"] <= WARM_TARGET_S),
            note=f"import onlinepg {warm['import_s']:.2f} s; whole process {warm['process_s'] - warm['tour_again_s']:.2f} s "
                 f"with the {len(_tour_configs())} tiny runs' own work ({warm['tour_again_s']:.2f} s)" + _uncached_note(),
            data=warm)
    job_what = "Default job, cold: `onlinepg run` on a fresh kernel cache, whole process"
    if job_cold is None:
        sec.add(job_what, target=f"≤ {DEFAULT_JOB_COLD_TARGET_S:.0f} s", skipped="--quick: it compiles for tens of "
                "seconds; run without --quick")
    else:
        ok = job_cold["wall_s"] <= DEFAULT_JOB_COLD_TARGET_S
        sec.add(job_what, f"{job_cold['wall_s']:.1f} s", f"{job_cold['wall_s'] / job_warm['wall_s']:.1f}× the warm run",
                f"≤ {DEFAULT_JOB_COLD_TARGET_S:.0f} s", verdict(ok),
                note=f"the run itself (summary.json wall_seconds) {job_cold['run_wall_s']:.1f} s, the rest is start-up; "
                     "the run compiles its evaluation kernels in a helper process on the second core meanwhile "
                     "(onlinepg.compile_ahead.ahead)" + ("" if ok else ". Why: Numba compiles the kernels the job calls (the fused PG step, likelihoods, "
                        "contexts, teacher) on one core; `onlinepg warmup` compiles every kernel ahead, in parallel "
                        "processes"), data=job_cold)
    sec.add("Default job, warm: the same command again (cached kernels), whole process"
            + (" (--quick: the environment's cache)" if quick else ""), f"{job_warm['wall_s']:.1f} s",
            note=f"the run itself {job_warm['run_wall_s']:.1f} s ({job_warm['rounds']} rounds)", data=job_warm)
    small, big = n_mem
    grow = rss[big] / rss[small]
    sec.add(f"Peak RSS, {big:,}-round bandit run (fresh process)", f"{rss[big]:,.0f} MiB",
            f"{grow:.2f}× the {small:,}-round run ({rss[small]:,.0f} MiB)",
            note="flat: traces spill to Parquet" if grow < 1.1 else "grows with the run length",
            data={"peak_rss_mib": {str(n): v for n, v in rss.items()}})
    return sec


def uncached_kernels():
    """Names of the public kernels compiled without an on-disk cache (recompiled in every process)."""
    import onlinepg.kernels as K
    from numba.core.caching import NullCache
    return sorted(name for name in dir(K) if isinstance(getattr(getattr(K, name), "_cache", None), NullCache))


def _uncached_note():
    names = uncached_kernels()
    if not names:
        return ""
    why = (" (the serial twins of kernels/serial.py are built without cache=True)"
           if all(n.endswith("_serial") for n in names) else "")
    return f". Not cached, so recompiled by every process: {', '.join(names)}{why}"


def main(argv=None):
    import argparse
    from .report import section_markdown
    ap = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    print(section_markdown(run(ap.parse_args(argv).quick)))


if __name__ == "__main__":
    main()
