"""Streaming-engine throughput: ``python -m bench.stream [--quick]``.

Prints, on this machine:
  1. rounds/s of the N = 1 bandit stream (teacher, k = 10, d = 20, on-policy PG, adaptive LR) with the
     per-round trace on (every round) and decimated (every 100th round);
  2. tokens/s of a long-sequence stream (teacher N = 128, d = k = 32, per-round on-policy PG);
  3. the Parquet spill overhead: the same run with traces effectively off (one row) vs decimated every 100;
  4. peak RSS of a 10^7-round bandit run vs a 10^6-round one (memory stays flat), each in a fresh process;
  5. the same with one evaluation (eval_every = rounds) and every round traced: the worst case for trace
     buffering, which traces flushed by size (onlinepg.trace.FLUSH_BYTES) keep flat too.
Each figure is the median of ``--reps`` runs, alternating the variants (A B A B …) so drift hits them alike.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile

BANDIT = {"task": {"kind": "teacher", "d": 20, "k": 10, "N": 1, "contexts": "rademacher"},
          "algo": {"name": "pg", "behaviour": "policy", "lr_rule": "adaptive"},
          "run": {"eval_every": 100_000, "progress": False}}
LONG = {"task": {"kind": "teacher", "d": 32, "k": 32, "N": 128, "contexts": "mixture", "centres": 32},
        "algo": {"name": "pg", "behaviour": "policy", "lr_rule": "adaptive"},
        "run": {"eval_every": 5_000, "progress": False, "tracked": "none"}}


def _cfg(base, rounds, trace_every):
    cfg = json.loads(json.dumps(base))
    cfg["run"].update(rounds=rounds, trace_every=trace_every)
    return cfg


def timed_run(cfg):
    import onlinepg
    with tempfile.TemporaryDirectory() as tmp:
        s = onlinepg.run(cfg, f"{tmp}/r")
    return s["rounds"] / s["rounds_per_second"], s     # the streaming loop only (no setup, no compile)


def _peak_rss(rounds, trace_every=100, eval_every=None):
    cfg = _cfg(BANDIT, rounds, trace_every)
    if eval_every:
        cfg["run"]["eval_every"] = eval_every
    code = ("import json, tempfile, onlinepg\n"
            f"cfg = json.loads({json.dumps(json.dumps(cfg))})\n"
            "with tempfile.TemporaryDirectory() as t: onlinepg.run(cfg, t + '/r')\n"
            # VmHWM, not ru_maxrss: Linux carries the parent's peak into a forked child across exec
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    n_bandit = 100_000 if args.quick else 2_000_000
    n_long = 1_000 if args.quick else 20_000
    n_mem = (10**5, 10**6) if args.quick else (10**6, 10**7)
    import numba
    print(f"machine: {_cpu()} | {numba.config.NUMBA_NUM_THREADS} numba threads | python {sys.version.split()[0]}")
    timed_run(_cfg(BANDIT, 1000, 1))   # compile / load caches outside the clock
    variants = {"bandit, trace every round": _cfg(BANDIT, n_bandit, 1),
                "bandit, trace every 100th": _cfg(BANDIT, n_bandit, 100),
                "bandit, trace off (1 row)": _cfg(BANDIT, n_bandit, 10**12),
                "long N=128, trace every round": _cfg(LONG, n_long, 1)}
    times = {k: [] for k in variants}
    for _ in range(args.reps):
        for name, cfg in variants.items():
            times[name].append(timed_run(cfg)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [("bandit N=1 k=10 d=20: rounds/s, trace every round", n_bandit / med["bandit, trace every round"]),
            ("bandit N=1 k=10 d=20: rounds/s, trace every 100th", n_bandit / med["bandit, trace every 100th"]),
            ("bandit N=1 k=10 d=20: rounds/s, trace off", n_bandit / med["bandit, trace off (1 row)"]),
            ("long N=128 d=k=32: tokens/s, trace every round", n_long * 128 / med["long N=128, trace every round"])]
    spill = 1 - med["bandit, trace off (1 row)"] / med["bandit, trace every 100th"]
    spill_full = 1 - med["bandit, trace off (1 row)"] / med["bandit, trace every round"]
    rss = {n: _peak_rss(n) for n in n_mem}
    rss_one_eval = {n: _peak_rss(n, trace_every=1, eval_every=n) for n in n_mem}
    print(f"\n{'measure':<52} {'value':>14}")
    for name, val in rows:
        print(f"{name:<52} {val:>14,.0f}")
    print(f"{'Parquet spill share of run time, every 100th':<52} {spill:>13.1%}  (target <= 15%: "
          f"{'PASS' if spill <= 0.15 else 'MISS'})")
    print(f"{'Parquet spill share of run time, every round':<52} {spill_full:>13.1%}")
    for n, mb in rss.items():
        print(f"{f'peak RSS, {n:.0e}-round bandit run (MiB)':<52} {mb:>14,.0f}")
    for n, mb in rss_one_eval.items():
        print(f"{f'peak RSS, {n:.0e} rounds, eval_every=rounds, all traced':<52} {mb:>14,.0f}")
    print(f"(medians of {args.reps} interleaved repetitions of the streaming loop: context generation, kernels, "
          "evaluation and Parquet writes; setup and compile excluded)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": dict(rows), "spill_share_every_100": spill, "spill_share_every_round": spill_full,
                       "peak_rss_mib": {str(n): v for n, v in rss.items()},
                       "peak_rss_mib_one_eval_every_round_traced": {str(n): v for n, v in rss_one_eval.items()},
                       "times": times}, fh, indent=2)


def _cpu():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


if __name__ == "__main__":
    main()
