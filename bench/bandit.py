"""Section 2 — streaming bandit multiclass (N = 1): onlinepg vs Vowpal Wabbit, River and scikit-learn.

    python -m bench.bandit [--quick]

The stream is the engine's own teacher stream (docs/theory.md §2, N = 1): x ∈ {±1}^20, y* = argmax W1* x with
W1* ∈ R^{10×20} ~ N(0, 1), hence linearly separable. It is drawn once and every learner sees the same rows
in the same order:

* onlinepg: on-policy PG with the adaptive learning rate and 0/1 outcome reward (bandit feedback: only
  whether the sampled action was right), the per-round chunk driver (``kernels.rounds.DRIVERS``) on the precomputed rows, with exactly
  the parameters and sampling seed ``onlinepg.engine.run`` uses (checked: the engine's own run of the same
  config makes the same number of mistakes);
* Vowpal Wabbit ``--cbify 10`` through its Python package, one ``learn(example_string)`` call per round: VW
  picks an action by its default ε-greedy exploration (ε = 0.05) and learns from the 0/1 cost of that action
  only; its mistakes are its own progressive-validation loss (``get_sum_loss``: the summed 0/1 costs);
* River ``SoftmaxRegression`` and scikit-learn ``Perceptron.partial_fit``, one sample at a time, with the
  full label (full information: an upper reference, not a bandit learner).

Online mistakes use progressive validation (River/VW semantics): the action a learner commits to at round t
is scored before it learns from round t, and the first, untrained prediction counts. A mistake is a committed
action ≠ y*. Learners run interleaved (A B C D A B …): the stream is cut into slots and every learner
processes its next slot in turn, carrying its state over; rounds/s is the median over slots. River and
scikit-learn pay ~0.1–2 ms per Python call, so they run on a prefix of the stream (their horizon is shown),
and onlinepg's and VW's mistakes are also reported at that horizon. Building the peers' inputs (VW strings,
River dicts) is done before the clock starts, in the peers' favour.
"""
import statistics
import time

import numpy as np

from .report import LoadMeter, Section, human, verdict

K_CLASSES, D_CONTEXT = 10, 20
TASK = {"kind": "teacher", "d": D_CONTEXT, "k": K_CLASSES, "N": 1, "contexts": "rademacher", "seed": 0}
SPEED_TARGET = 20.0        # onlinepg rounds/s ≥ 20× VW's
FLOOR_TARGET = 0.75        # the engine end to end at ≥ 75 % of the fused per-round floor (issue 22)
GRID_K, GRID_D = (10, 50, 200), (20, 100, 1000)
GRID_WORK = 4e8            # a grid cell plays about GRID_WORK / (k·d) rounds, within GRID_ROUNDS
GRID_ROUNDS = (20_000, 200_000)


def _config(algo, rounds, k=K_CLASSES, d=D_CONTEXT):
    return {"task": dict(TASK, k=k, d=d), "algo": {"name": algo, "behaviour": "policy", "lr_rule": "adaptive"},
            "run": {"rounds": rounds, "progress": False, "eval_every": rounds, "trace_every": 100}}


def make_stream(T, k=K_CLASSES, d=D_CONTEXT):
    """The first T contexts of the engine's stream for TASK (at k classes, d features): X float64[T, d],
    J int64[T], Ystar int64[T, 1]."""
    from onlinepg import config as C
    from onlinepg.build import ContextStream, build_task
    cfg = C.resolve(_config("pg", T, k, d))
    b = ContextStream(build_task(cfg), cfg).batch(0, T)
    return b.X, b.J, b.Ystar


class OnlinepgLearner:
    """onlinepg's per-round kernel on a slice of the precomputed stream, set up exactly as the engine does."""

    def __init__(self, algo, X, J, Ystar, k=K_CLASSES):
        from onlinepg import config as C
        from onlinepg.build import ContextStream, build_base, build_task
        from onlinepg.kernels import codes
        from onlinepg.kernels.rounds import DRIVERS
        from onlinepg.learners import make_learner
        from onlinepg.policy import Policy
        cfg = C.resolve(_config(algo, len(X), k, X.shape[1]))   # the kernels trust the shapes: X's d, this k
        task = build_task(cfg)
        base = build_base(task, cfg)
        self.L = make_learner(cfg, ContextStream(task, cfg), Policy(task.features, base.w), base)
        self.O, self.X, self.J, self.Ystar = codes, X, J, Ystar
        self.run = DRIVERS[self.L.kind]                  # the learner's own compiled chunk driver
        self.trace = np.empty((2, codes.NTRACE))        # trace_every is huge: only round 0 writes a row
        self.name = {"pg": "onlinepg PG, adaptive LR (bandit feedback)",
                     "perceptron": "onlinepg perceptron (full information)"}[algo]

    def process(self, lo, hi):
        L = self.L
        self.run(L.params, L.features.fm, L.policy.w, L.w0, L.G2, self.X[lo:hi], self.J[lo:hi], self.Ystar[lo:hi],
                 lo, L.seed, L.counters, 1 << 62, self.trace)

    @property
    def mistakes(self):
        return int(self.L.counters[self.O.C_MIST_SAMPLED])


class VWLearner:
    """Vowpal Wabbit contextual bandit on a multiclass stream: ``--cbify K``, default ε-greedy."""

    name = f"Vowpal Wabbit --cbify {K_CLASSES} (ε-greedy, ε = 0.05)"

    def __init__(self, X, y, horizon, k=K_CLASSES):
        import vowpalwabbit
        self.ws = vowpalwabbit.Workspace(f"--cbify {k} --quiet --random_seed 0")
        pos = [f"f{c}:1" for c in range(X.shape[1])]
        neg = [f"f{c}:-1" for c in range(X.shape[1])]
        # VW labels are 1-based; the label only lets cbify compute the 0/1 cost of the action VW chose
        self.lines = [f"{y[t] + 1} | " + " ".join(pos[c] if X[t, c] > 0 else neg[c] for c in range(X.shape[1]))
                      for t in range(horizon)]

    def process(self, lo, hi):
        # One call per round, VW's fastest Python path: learn() predicts (samples an action), takes the 0/1 cost
        # of that action only, and learns. Its progressive-validation loss is then exactly the count of rounds
        # whose chosen action ≠ y* (checked against parse/learn/get_prediction, which is ~1.5× slower).
        learn, lines = self.ws.learn, self.lines
        for t in range(lo, hi):
            learn(lines[t])

    @property
    def mistakes(self):
        return int(round(self.ws.get_sum_loss()))

    def close(self):
        """Free the workspace now: a VW workspace dropped without ``finish()`` can crash the process (a double
        free seen at d = 100) when the next one is made."""
        self.ws.finish()


class RiverLearner:
    name = "River SoftmaxRegression (full information)"

    def __init__(self, X, y, horizon):
        from river import linear_model
        self.model = linear_model.SoftmaxRegression()
        self.rows = [dict(enumerate(X[t].tolist())) for t in range(horizon)]
        self.y, self.mistakes = y[:horizon].tolist(), 0

    def process(self, lo, hi):
        model, rows, y, m = self.model, self.rows, self.y, 0
        for t in range(lo, hi):
            if model.predict_one(rows[t]) != y[t]:     # None before the first label: a mistake
                m += 1
            model.learn_one(rows[t], y[t])
        self.mistakes += m


class SklearnLearner:
    name = "scikit-learn Perceptron.partial_fit (full information)"

    def __init__(self, X, y, horizon):
        from sklearn.linear_model import Perceptron
        self.model, self.X, self.y, self.mistakes = Perceptron(), X, y, 0
        self.classes, self.fitted = np.arange(K_CLASSES), False

    def process(self, lo, hi):
        model, X, y, m = self.model, self.X, self.y, 0
        for t in range(lo, hi):
            xt, yt = X[t:t + 1], y[t:t + 1]
            if not self.fitted or model.predict(xt)[0] != yt[0]:   # untrained: counts as a mistake
                m += 1
            if self.fitted:
                model.partial_fit(xt, yt)
            else:
                model.partial_fit(xt, yt, classes=self.classes)
                self.fitted = True
        self.mistakes += m


def _peer(cls, package, X, y, horizon):
    """The peer learner, or (None, reason) when its package is missing or fails to start."""
    try:
        return cls(X, y, horizon), None
    except ImportError as exc:
        return None, f"{package} not installed: pip install -e .[bench] ({exc})"
    except Exception as exc:                   # noqa: BLE001 - any start-up failure is reported, not raised
        return None, f"{package} failed to start: {type(exc).__name__}: {exc}"


def interleaved(learners, horizons, slots, marks):
    """Run every learner over its horizon in ``slots`` interleaved slots. Returns per learner: seconds per
    slot, rounds per slot, and mistakes at every mark ≤ its horizon."""
    out = {key: {"seconds": [], "rounds": [], "mistakes_at": {}} for key in learners}
    for s in range(slots):
        for key, lr in learners.items():
            H = horizons[key]
            lo, hi = s * H // slots, (s + 1) * H // slots
            cuts = [lo] + [m for m in sorted(marks) if lo < m < hi] + [hi]
            t0 = time.perf_counter()
            for a, b in zip(cuts[:-1], cuts[1:]):
                lr.process(a, b)
                if b in marks:
                    out[key]["mistakes_at"][b] = lr.mistakes
            out[key]["seconds"].append(time.perf_counter() - t0)
            out[key]["rounds"].append(hi - lo)
    return out


def engine_check(T, expected_mistakes, k=K_CLASSES, d=D_CONTEXT):
    """The same config through ``onlinepg.engine.run`` (its own context generation, exact evaluation, Parquet
    trace every 100th round): rounds/s end to end and whether its mistakes equal the kernel loop's."""
    import tempfile
    import onlinepg
    with tempfile.TemporaryDirectory() as tmp:
        s = onlinepg.run(_config("pg", T, k, d), f"{tmp}/r")
    return s["rounds_per_second"], s["mistakes_sampled"], s["mistakes_sampled"] == expected_mistakes


def grid_cell(k, d, T, log):
    """One cell of the k × d grid: the engine end to end (engine.run), its kernel loop, the fused floor
    (bench.limit.bandit_floor) and VW --cbify k on the same T-round stream, back to back. Returns a dict, with
    ``vw`` None (and ``vw_skipped`` the reason) when VW is missing."""
    from .limit import bandit_floor
    X, J, Ystar = make_stream(T, k, d)
    y = np.ascontiguousarray(Ystar[:, 0])
    lr = OnlinepgLearner("pg", X, J, Ystar, k)
    t0 = time.perf_counter()
    lr.process(0, T)
    kernel_rps = T / (time.perf_counter() - t0)
    bandit_floor(X[:10], y[:10], k, 7, np.zeros((d, k)))          # compile / load outside the clock
    t0 = time.perf_counter()
    bandit_floor(X, y, k, 7, np.zeros((d, k)))
    floor_rps = T / (time.perf_counter() - t0)
    eng_rps, eng_m, same = engine_check(T, lr.mistakes, k, d)
    out = dict(k=k, d=d, rounds=T, engine_rps=eng_rps, engine_mistakes=eng_m, kernel_rps=kernel_rps,
               kernel_mistakes=lr.mistakes, engine_equals_kernel=same, floor_rps=floor_rps, vw=None)
    vw, why = _peer(lambda X_, y_, H: VWLearner(X_, y_, H, k), "vowpalwabbit", X, y, T)
    if vw is None:
        out["vw_skipped"] = why
    else:
        t0 = time.perf_counter()
        vw.process(0, T)
        out.update(vw=dict(rounds_per_second=T / (time.perf_counter() - t0), mistakes=vw.mistakes))
        vw.close()
    log(f"[2] grid k = {k}, d = {d}: engine {eng_rps:,.0f} rounds/s, floor {floor_rps:,.0f}"
        + (f", VW {out['vw']['rounds_per_second']:,.0f}" if out["vw"] else ""))
    return out


def grid_rows(sec, quick, log):
    """Section 2's k × d grid (issue 22): one row per cell, engine end to end against VW and the fused floor."""
    ks, ds = ((10, 50), (20, 100)) if quick else (GRID_K, GRID_D)
    lo, hi = (2_000, 2_000) if quick else GRID_ROUNDS
    for k in ks:
        for d in ds:
            T = int(min(hi, max(lo, GRID_WORK // (k * d))))
            c = grid_cell(k, d, T, log)
            what = f"N = 1 grid, k = {k}, d = {d} ({T:,} rounds): engine.run vs Vowpal Wabbit --cbify {k}"
            target = f"≥ {SPEED_TARGET:.0f}× VW and ≥ {FLOOR_TARGET:.0%} of the floor"
            floor = c["engine_rps"] / c["floor_rps"]
            if c["vw"] is None:
                sec.add(what, target=target, skipped=c["vw_skipped"], data=c)
                continue
            vw = c["vw"]
            speed = c["engine_rps"] / vw["rounds_per_second"]
            sec.add(what, f"{human(c['engine_rps'])} vs {human(vw['rounds_per_second'])} rounds/s; mistakes "
                    f"{c['engine_mistakes']:,} vs {vw['mistakes']:,}",
                    f"{speed:.1f}× VW; engine at {floor:.0%} of the floor", target,
                    verdict(speed >= SPEED_TARGET and floor >= FLOOR_TARGET),
                    note=f"kernel loop {human(c['kernel_rps'])} rounds/s, fused floor {human(c['floor_rps'])} "
                         f"rounds/s; engine.run's mistakes equal the kernel loop's: "
                         f"{'yes' if c['engine_equals_kernel'] else 'NO'}", data=c)


def run(quick=False, log=print):
    T = 20_000 if quick else 1_000_000
    h_river, h_sk = (4_000, 400) if quick else (200_000, 10_000)
    slots = 4 if quick else 10
    sec = Section(2, "Streaming bandit multiclass, N = 1 (separable teacher stream)",
                  setup=f"Teacher stream k = {K_CLASSES}, d = {D_CONTEXT}, x ∈ {{±1}}^{D_CONTEXT}, y* = argmax W1* x, "
                        f"{T:,} rounds, identical for every learner; progressive validation (predict, then "
                        f"learn); {slots} interleaved slots per learner, median rounds/s. Peers' inputs "
                        "(VW strings, River dicts) are built before the clock starts.")
    log(f"[2] drawing the stream ({T:,} rounds) and building the peers' inputs")
    X, J, Ystar = make_stream(T)
    y = Ystar[:, 0]
    learners, horizons, skipped = {}, {}, {}
    for algo in ("pg", "perceptron"):
        learners[algo], horizons[algo] = OnlinepgLearner(algo, X, J, Ystar), T
        OnlinepgLearner(algo, X, J, Ystar).process(0, 10)      # load/compile the chunk driver outside the clock
    for key, cls, package, H in (("vw", VWLearner, "vowpalwabbit", T), ("river", RiverLearner, "river", h_river),
                                 ("sklearn", SklearnLearner, "scikit-learn", h_sk)):
        t0 = time.perf_counter()
        lr, why = _peer(cls, package, X, y, H)
        if lr is None:
            skipped[key] = (cls.name, why)
            log(f"[2] {cls.name}: skipped ({why})")
        else:
            learners[key], horizons[key] = lr, H
            log(f"[2] {cls.name}: inputs ready in {time.perf_counter() - t0:.1f} s")
    marks = {h_sk, h_river, T}
    log(f"[2] running {', '.join(learners)} interleaved")
    with LoadMeter() as meter:
        res = interleaved(learners, horizons, slots, marks)
    sec.load = meter.as_dict()
    rps = {key: statistics.median(r / s for r, s in zip(v["rounds"], v["seconds"])) for key, v in res.items()}
    pg_at = res["pg"]["mistakes_at"]
    for key, lr in learners.items():
        H, m = horizons[key], res[key]["mistakes_at"][horizons[key]]
        ratio = "" if key in ("pg", "perceptron") else f"onlinepg PG {rps['pg'] / rps[key]:.1f}× faster"
        note = "" if H == T else (f"prefix of the stream; onlinepg PG made {pg_at[H]:,} mistakes by round {H:,}"
                                  + (f", VW {res['vw']['mistakes_at'][H]:,}" if "vw" in res else ""))
        sec.add(lr.name, f"{human(rps[key])} rounds/s; {m:,} mistakes in {H:,} rounds ({m / H:.2%})", ratio,
                note=note, data=dict(rounds_per_second=rps[key], mistakes=m, horizon=H, **res[key]))
    for key, (name, why) in skipped.items():
        sec.skip(name, why)

    eng_rps, eng_m, same = engine_check(T, res["pg"]["mistakes_at"][T])
    sec.add("onlinepg engine.run, same config end to end (own context generation, exact eval, Parquet trace "
            "every 100th round)", f"{human(eng_rps)} rounds/s; {eng_m:,} mistakes",
            note="same mistakes as the kernel loop above: " + ("yes (identical stream and draws)" if same else "NO"),
            data=dict(rounds_per_second=eng_rps, mistakes=eng_m, identical=same))
    if "vw" in learners:
        speed = rps["pg"] / rps["vw"]
        sec.add("Streaming N = 1, rounds/s vs Vowpal Wabbit", f"{human(rps['pg'])} vs {human(rps['vw'])} rounds/s",
                f"{speed:.1f}×", f"≥ {SPEED_TARGET:.0f}×", verdict(speed >= SPEED_TARGET),
                data=dict(ratio=speed, target=SPEED_TARGET))
        mp, mv = pg_at[T], res["vw"]["mistakes_at"][T]
        sec.add(f"Streaming N = 1, online mistakes at {T:,} rounds", f"onlinepg {mp:,} vs VW {mv:,}",
                f"{mp / mv:.2f}× VW's", "fewer than VW ε-greedy", verdict(mp < mv),
                data=dict(onlinepg=mp, vw=mv))
    else:
        why = skipped["vw"][1]
        sec.add("Streaming N = 1, rounds/s vs Vowpal Wabbit", target=f"≥ {SPEED_TARGET:.0f}×", skipped=why)
        sec.add(f"Streaming N = 1, online mistakes at {T:,} rounds", target="fewer than VW ε-greedy", skipped=why)
    with LoadMeter() as meter:
        grid_rows(sec, quick, log)
    if meter.others is not None:
        sec.notes.append(f"The k × d grid ({meter.seconds:.0f} s, each cell's learners back to back): other processes "
                         f"kept {meter.others:.2f} cores busy meanwhile.")
    return sec


def main(argv=None):
    import argparse
    from .report import section_markdown
    ap = argparse.ArgumentParser(prog="python -m bench.bandit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    print(section_markdown(run(ap.parse_args(argv).quick)))


if __name__ == "__main__":
    main()
