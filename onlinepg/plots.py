"""Figures of a run folder: ``plot_run(run)`` writes PNGs into ``run/figures/`` (``onlinepg plot``).

test_error.png     exact test error and its running average vs round (log x)
counters.png       cumulative mistakes (sampled, expected) and reward queries (ORM, PRM) vs round
tracked.png        the tracked contexts' likelihood trajectories, coloured by their initial likelihood
likelihood_cdf.png the likelihood CDF F(α) of the base and the kept checkpoints
lq.png             the Likelihood Quantile Q(ε) and the token-level Q^TL(ε)
alpha_tail.png     the α-tail α · P[p(y*|x) > α]
loglik_hist.png    histogram of log p(y*|x)

The likelihood profiles (the last four) are computed exactly on one fresh context set of the run's task
(``onlinepg.lq``). Likelihoods spanning many decades (below 10^-12) are drawn by their log10 on an axis
labelled in powers of ten, so a 10^-400 — zero in float64 — is drawn where it belongs. matplotlib (a dependency)
is imported only here, through its object API (no pyplot, no global backend switch).
"""
import math
import os
import pathlib

import numpy as np

from . import lq as L
from .errors import ConfigError
from .weights import load_policy
from .runfolder import checkpoints, is_run, run_config
from .trace import read_table

DPI = 110
SIZE = (6.4, 4.2)
LN10 = math.log(10.0)
FIGURES = ("test_error", "counters", "pass_at_k", "tracked", "likelihood_cdf", "lq", "alpha_tail", "loglik_hist")
# Quantities reaching below 10^NATIVE_LOG10_MIN are drawn by their log10 on a linear axis labelled 10^k: past
# ~10^-300 matplotlib's own log axis would see float64 zeros, and over many decades its ticks land every 7th.
NATIVE_LOG10_MIN = -12.0


def _mpl():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("plotting needs matplotlib (a dependency of onlinepg that is missing here): "
                          "pip install matplotlib") from None
    return Figure


def new_figure(ncols=1, size=SIZE):
    fig = _mpl()(figsize=size, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, (axes[0] if ncols == 1 else axes)


def save(fig, path):
    """``fig`` as a PNG at ``path``, written atomically."""
    import io

    from .outdir import write_bytes
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return write_bytes(path, buf.getvalue())


class Log10Axis:
    """An axis for quantities given by their log10: matplotlib's log axis when they stay above
    10^NATIVE_LOG10_MIN (values are passed as 10**x), else linear in log10 with ticks labelled 10^k."""

    def __init__(self, ax, which, lo10):
        self.native = lo10 > NATIVE_LOG10_MIN
        axis = ax.xaxis if which == "x" else ax.yaxis
        if self.native:
            (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        else:
            from matplotlib.ticker import MaxNLocator
            axis.set_major_locator(MaxNLocator(nbins=7, integer=True, steps=[1, 2, 2.5, 5, 10]))
            axis.set_major_formatter(_pow10_formatter())
        self.which = which

    def __call__(self, log10_values):
        v = np.asarray(log10_values, dtype=float)
        return 10.0 ** v if self.native else v

    def top(self, ax, log10_top=0.15):
        """Cap the axis just above likelihood 1 (nothing drawn here can exceed it)."""
        (ax.set_xlim if self.which == "x" else ax.set_ylim)(None, float(self(log10_top)))


def _pow10_formatter():
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda v, _: f"$10^{{{v:.3g}}}$")


def _round_axis(ax, rounds):
    """Rounds on a log axis that still shows round 0: linear up to the first evaluated round, log after."""
    pos = np.asarray(rounds)[np.asarray(rounds) > 0]
    ax.set_xscale("symlog", linthresh=float(pos.min()) if pos.size else 1.0, linscale=0.3)
    ax.set_xlabel("round (log scale after the first evaluation)")
    ax.set_xlim(left=0)


def _spans_decades(values, decades=2.0):
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 1 and v.min() > 0 and math.log10(v.max() / v.min()) >= decades


def _title(ax, cfg, what):
    t, a = cfg.task, cfg.algo
    shape = f"{t.kind} k={t.k} N={t.N}" + (f" d={t.d}" if t.kind == "teacher" else "")
    ax.set_title(f"{what}\n{a.name} · {shape}", fontsize=10)


# -- training-curve figures ------------------------------------------------------------------------

def error_figure(ev, cfg):
    """``ev``: the eval table as a dict of columns (round, test_error, test_error_avg)."""
    fig, ax = new_figure()
    r = np.asarray(ev["round"])
    ax.plot(r, ev["test_error"], "o-" if len(r) <= 60 else "-", ms=3, lw=1.5, label="test error  1 − E p(y*|x)")
    ax.plot(r, ev["test_error_avg"], "--", lw=1.5, label="running average over evaluations")
    _round_axis(ax, r)
    errs = np.concatenate([np.asarray(ev["test_error"]), np.asarray(ev["test_error_avg"])])
    if _spans_decades(errs):
        ax.set_yscale("log")
    ax.set_ylabel("test error (probability of a wrong response)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    _title(ax, cfg, "Exact test error")
    return fig


def pass_at_k_figure(pk, cfg, curves=6):
    """``pk``: the passk table (round, k, pass_at_k, base_pass_at_k). pass@k against k on log axes: the base and up
    to ``curves`` evaluations spread over the run (the first and the last kept), exact (docs/theory.md §3.5)."""
    fig, ax = new_figure()
    r, k = np.asarray(pk["round"]), np.asarray(pk["k"])
    rounds = np.unique(r)
    pick = rounds[np.unique(np.linspace(0, len(rounds) - 1, min(curves, len(rounds))).round().astype(int))]
    first = r == rounds[0]
    ax.plot(k[first], np.asarray(pk["base_pass_at_k"])[first], "k--", lw=1.5, label="base")
    cmap = _mpl_cmap("viridis")
    for i, t in enumerate(pick):
        m = r == t
        ax.plot(k[m], np.asarray(pk["pass_at_k"])[m], "-", lw=1.2, color=cmap(i / max(1, len(pick) - 1)),
                label=f"round {t:,}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per context)")
    ax.set_ylabel("pass@k (exact)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _title(ax, cfg, "pass@k against the base")
    return fig


def _thin(n, most=2000):
    """Row indices, at most ``most`` of them, spread evenly in log(round) (traces can be millions long)."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.geomspace(1, n, most).astype(np.int64) - 1)


def counters_figure(tab, cfg):
    """``tab``: a trace with cumulative counters (rounds/ or eval/) as a dict of columns."""
    fig, (a1, a2) = new_figure(2, size=(10.0, 4.0))
    # rounds/ rows hold the counters *after* round ``round`` (0-based); eval/ rows carry ``rounds`` played
    r = np.asarray(tab["rounds"]) if "rounds" in tab else np.asarray(tab["round"]) + 1
    keep = r > 0
    idx = _thin(int(keep.sum()))
    r = r[keep][idx]
    series = {a1: [("mistakes_sampled", "sampled mistakes  Σ 1[ŷ ≠ y*]"),
                   ("mistakes_expected", "expected mistakes  Σ (1 − p(y*|x))")],
              a2: [("orm_queries", "outcome-reward (ORM) queries"),
                   ("prm_queries", "process-reward (PRM) prefix checks")]}
    for ax, cols in series.items():
        drawn = []
        for col, label in cols:
            y = np.asarray(tab[col], dtype=float)[keep][idx]
            if y.size and y.max() > 0:
                ax.plot(r, y, lw=1.6, label=label)
                drawn.append(y)
        if not drawn:
            ax.text(0.5, 0.5, "none in this run", ha="center", va="center", transform=ax.transAxes)
        if r.size and r.max() / r.min() >= 100:
            ax.set_xscale("log")
        if drawn and _spans_decades(np.concatenate([d[d > 0] for d in drawn])):
            ax.set_yscale("log")
        ax.set_xlabel("rounds played")
        ax.grid(alpha=0.3, which="both")
        if drawn:
            ax.legend(loc="upper left")
    a1.set_ylabel("cumulative mistakes (responses)")
    a2.set_ylabel("cumulative reward queries")
    _title(a1, cfg, "Mistakes (progressive validation)")
    _title(a2, cfg, "Reward queries")
    return fig


def tracked_figure(tr, cfg):
    """``tr``: the tracked table (round, tracked_id, loglik_star) as a dict of columns."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm, Normalize
    fig, ax = new_figure(size=(7.0, 4.4))
    rounds = np.asarray(tr["round"])
    ids = np.asarray(tr["tracked_id"])
    l10 = np.asarray(tr["loglik_star"], dtype=float) / LN10
    ur = np.unique(rounds)
    traj = np.full((len(np.unique(ids)), len(ur)), np.nan)
    traj[np.searchsorted(np.unique(ids), ids), np.searchsorted(ur, rounds)] = l10
    y = Log10Axis(ax, "y", float(np.nanmin(traj)))
    init = traj[:, 0]
    lo, hi = float(np.nanmin(init)), float(np.nanmax(init))
    # the colour scale reads like the y axis: a log colorbar in float range, log10 units labelled 10^k below it
    native = lo > -290.0
    norm = (LogNorm if native else Normalize)(*((10.0 ** lo, 10.0 ** max(hi, lo + 1e-3)) if native
                                                 else (lo, max(hi, lo + 1e-3))))
    cmap = _mpl_cmap("viridis")
    for row in np.argsort(init):
        ax.plot(ur, y(traj[row]), lw=1.0, alpha=0.85, color=cmap(norm(10.0 ** init[row] if native else init[row])))
    mean = np.log10(np.nanmean(10.0 ** traj.clip(-300), axis=0).clip(1e-300))
    ax.plot(ur, y(mean), color="black", lw=2.2, ls="--", label="mean likelihood of the tracked contexts")
    ax.plot([], [], color=cmap(0.5), lw=1.0, label=f"one tracked context ({traj.shape[0]} in all)")
    _round_axis(ax, ur)
    ax.set_ylabel("likelihood  p(y*|x)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    sm = ScalarMappable(norm=norm, cmap=cmap)
    cb = fig.colorbar(sm, ax=ax, **({} if native else {"format": _pow10_formatter()}))
    cb.set_label("initial likelihood  p(y*|x) at round 0")
    y.top(ax)
    what = "mixture centres" if cfg.run.tracked == "centres" else "tracked test contexts"
    _title(ax, cfg, f"Likelihood trajectories of the {what}")
    return fig


def _mpl_cmap(name):
    import matplotlib
    return matplotlib.colormaps[name]


# -- likelihood-profile figures ------------------------------------------------------------------

def _model_colours(profiles):
    """Grey for the base, then dark → light along training (plasma stops at orange: its yellow end is
    unreadable on white)."""
    cmap = _mpl_cmap("plasma")
    n = len(profiles)
    return [("0.35" if lab == "base" else cmap(0.8 * i / max(n - 1, 1))) for i, (lab, _) in enumerate(profiles)]


def likelihood_cdf_figure(profiles, cfg, ncontexts):
    """``profiles``: [(label, Likelihoods)], base first."""
    fig, ax = new_figure()
    grid = L.log_alpha_grid([lik.loglik for _, lik in profiles], num=2)
    x = Log10Axis(ax, "x", float(grid[0]) / LN10)
    for (lab, lik), c in zip(profiles, _model_colours(profiles)):
        # the exact empirical CDF: evaluated at every observed value, drawn as a right-continuous staircase
        at = np.concatenate([grid[:1], np.sort(lik.loglik[np.isfinite(lik.loglik)]), [0.0]])
        ax.step(x(at / LN10), L.likelihood_cdf(lik, at), where="post", color=c, lw=1.6, label=lab)
    x.top(ax)
    ax.set_xlabel("likelihood threshold α")
    ax.set_ylabel("F(α) = P_x[ p(y*|x) ≤ α ]  (fraction of contexts)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    _title(ax, cfg, f"Likelihood CDF ({ncontexts} contexts)")
    return fig


def lq_figure(profiles, cfg, ncontexts):
    fig, ax = new_figure()
    n = len(profiles[0][1])
    eps = np.geomspace(max(1.0 / n, 1e-4), 0.999, 300)
    curves = [(lab, L.likelihood_quantile(lik, eps) / LN10, L.token_likelihood_quantile(lik, eps) / LN10)
              for lab, lik in profiles]
    y = Log10Axis(ax, "y", min(float(c[1].min()) for c in curves))
    for (lab, q, qt), c in zip(curves, _model_colours(profiles)):
        ax.plot(eps, y(q), color=c, lw=1.7, label=lab)
        ax.plot(eps, y(qt), color=c, lw=1.3, ls=":")
    ax.plot([], [], color="black", lw=1.7, label="Q(ε), sequence")
    ax.plot([], [], color="black", lw=1.3, ls=":", label="Q$^{TL}$(ε), min token")
    y.top(ax)
    ax.set_xscale("log")
    ax.set_xlabel("ε (fraction of contexts ignored)")
    ax.set_ylabel("likelihood the other 1 − ε clear")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    _title(ax, cfg, f"Likelihood Quantile ({ncontexts} contexts)")
    return fig


def alpha_tail_figure(profiles, cfg, ncontexts):
    fig, ax = new_figure()
    grid = L.log_alpha_grid([lik.loglik for _, lik in profiles], num=1500)
    # α · P[p > α] ≤ α: on a log y axis every curve hugs the diagonal; a linear y shows where the mass is,
    # and the x range starts where some curve first reaches 1e-3 of the highest peak (left of it: flat zero)
    tails = np.exp([L.alpha_tail(lik, grid) for _, lik in profiles])
    first = int(np.argmax((tails >= 1e-3 * tails.max()).any(axis=0)))
    grid = np.linspace(grid[max(first - 1, 0)], 0.0, len(grid))
    x = Log10Axis(ax, "x", float(grid[0]) / LN10)
    for (lab, lik), c in zip(profiles, _model_colours(profiles)):
        ax.plot(x(grid / LN10), np.exp(L.alpha_tail(lik, grid)), color=c, lw=1.6, label=lab)
    x.top(ax)
    ax.set_xlabel("likelihood threshold α")
    ax.set_ylabel("α · P_x[ p(y*|x) > α ]  (linear)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    _title(ax, cfg, f"α-tail ({ncontexts} contexts)")
    return fig


def histogram_figure(profiles, cfg, ncontexts):
    fig, ax = new_figure()
    if len(profiles) > 2:
        profiles = [profiles[0], profiles[-1]]       # overlaid step histograms stay readable for two
    vals = [lik.loglik[np.isfinite(lik.loglik)] / LN10 for _, lik in profiles]
    lo = min(float(v.min()) for v in vals)
    hi = max(float(v.max()) for v in vals)
    edges = np.linspace(lo, max(hi, lo + 1e-6), 61)
    x = Log10Axis(ax, "x", lo)
    for (lab, _), v, c in zip(profiles, vals, _model_colours(profiles)):
        ax.hist(x(v), bins=x(edges), histtype="step", lw=1.6, color=c, label=lab)
    ax.set_xlabel("likelihood  p(y*|x)  (log-spaced bins)")
    ax.set_yscale("log")
    ax.set_ylabel("contexts per bin")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    _title(ax, cfg, f"Histogram of log-likelihoods ({ncontexts} contexts)")
    return fig


# -- the run folder ------------------------------------------------------------------------------

def _columns(table):
    return None if table is None else {name: table.column(name).to_numpy() for name in table.column_names}


COUNTER_COLUMNS = ["round", "mistakes_sampled", "mistakes_expected", "orm_queries", "prm_queries"]


def counter_trace(run, most=2000):
    """The counters of the per-round trace at ≤ ``most`` rows spread evenly in log(round), read part by part
    and column by column (a 10^7-round trace never sits in memory whole). None without a rounds/ trace."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    parts = sorted((pathlib.Path(run) / "rounds").glob("part-*.parquet"))
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in parts]
    want = _thin(sum(sizes), most)
    tables, start = [], 0
    for path, n in zip(parts, sizes):
        sel = want[(want >= start) & (want < start + n)] - start
        if sel.size:
            tables.append(pq.read_table(path, columns=COUNTER_COLUMNS).take(sel))
        start += n
    return _columns(pa.concat_tables(tables)) if tables else None


def run_profiles(run, contexts=L.DEFAULT_CONTEXTS, max_models=6):
    """[(label, Likelihoods)] of the base and up to ``max_models − 1`` kept checkpoints (spread evenly, the
    last always in), all on the same context set of the run's task (``lq.lq_contexts``)."""
    from .build import build_task
    cfg = run_config(run)
    task = build_task(cfg)
    batch = L.lq_contexts(task, contexts)
    models = [("base", pathlib.Path(run) / "base.npz")] if (pathlib.Path(run) / "base.npz").is_file() else []
    kept = checkpoints(run)
    if kept:
        pick = np.unique(np.linspace(0, len(kept) - 1, max(1, max_models - len(models))).round().astype(int))
        models += [(f"round {kept[i][0]}", kept[i][1]) for i in pick]
    return [(lab, L.evaluate_likelihoods(load_policy(p), batch)) for lab, p in models], len(batch.J)


def plot_run(run, *, contexts=L.DEFAULT_CONTEXTS, out=None, max_models=6, overwrite=False):
    """Write every figure of a run folder into ``out`` (default ``run/figures``); returns the paths written.
    A figure whose data the run did not record (e.g. no tracked contexts) is skipped with a note in the
    returned ``skipped`` list: ``(paths, skipped)``. An explicit ``out`` is claimed like every ``--out``
    (missing or empty; ``overwrite``: or a figures folder); the default ``run/figures`` is claimed inside the run and
    replaced when every file in it is an earlier plot's."""
    _mpl()
    if isinstance(run, bool) or not isinstance(run, (str, os.PathLike)):
        raise ConfigError(f"RUN_DIR must be a path to a run folder, got {run!r}")
    run = pathlib.Path(run)
    if not is_run(run):
        raise ConfigError(f"RUN_DIR: {run} is not a run folder (expected a folder with config.toml)")
    from . import validate as v
    contexts = v.integer("contexts", contexts, 1)
    max_models = v.integer("max_models", max_models, 1)
    from .outdir import OutDir, check_path, flags
    flags(overwrite, False)
    run_config(run)                 # an unreadable run config fails before any folder is touched
    if out is None:                 # the run's own figures folder, claimed inside the run and replaced
        out, overwrite = run / "figures", True
    check_path(out)
    with OutDir(out, "figures", overwrite=overwrite) as claim:
        return _plot_into(run, claim.replace(), contexts, max_models)


def _plot_into(run, out, contexts, max_models):
    cfg = run_config(run)
    written, skipped = [], []
    ev = _columns(read_table(run / "eval"))
    rounds = counter_trace(run)
    tracked = _columns(read_table(run / "tracked"))
    if ev is not None:
        written.append(save(error_figure(ev, cfg), out / "test_error.png"))
        written.append(save(counters_figure(rounds if rounds is not None else ev, cfg), out / "counters.png"))
    else:
        skipped += ["test_error (no eval/ trace)", "counters (no eval/ trace)"]
    passk = _columns(read_table(run / "passk")) if (run / "passk").is_dir() else None
    if passk is not None:
        written.append(save(pass_at_k_figure(passk, cfg), out / "pass_at_k.png"))
    else:
        skipped.append("pass_at_k (no passk/ trace: a run from before it existed)")
    if tracked is not None:
        written.append(save(tracked_figure(tracked, cfg), out / "tracked.png"))
    else:
        skipped.append("tracked (the run tracked no contexts: run.tracked = 'none')")
    profiles, n = run_profiles(run, contexts, max_models)
    if profiles:
        for name, make in (("likelihood_cdf", likelihood_cdf_figure), ("lq", lq_figure),
                           ("alpha_tail", alpha_tail_figure), ("loglik_hist", histogram_figure)):
            written.append(save(make(profiles, cfg, n), out / f"{name}.png"))
    else:
        skipped.append("likelihood profiles (no base.npz and no checkpoints)")
    return written, skipped
