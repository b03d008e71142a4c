"""Shared machinery of the paper-reproduction and theorem-scaling experiments.

An experiment is a module of this package defining ``run(ctx)``, registered under its command-line
name in ``onlinepg.experiments.MODULES`` (e.g. ``"lq-curves": "lq_curves"``). Its settings, description
included, live in ``data/configs/experiments/<name>.toml``:

    [experiment]   description, default seed count
    [full]         the paper's parameters (docs/theory.md §6); ``seeds`` in a scale table overrides the default
    [small]        the same experiment shrunk to finish in well under a minute (used by the tests)
    [config.*]     the engine config shared by every arm (sections task/base/algo/run)

Falsifiable checks: before its first run an experiment registers each check with ``ctx.predict(...)`` — the
quantity, the prediction computed from the run's actual parameters, the tolerance (a parameter of the spec,
fixed before the run) and the control a wrong engine would fail. They are written to ``checks.json`` before
any arm runs; after the runs ``ctx.verdict(name, passed, measured)`` reports each as measured, and
``results.md`` ends its table with a ``## Verdict`` section: one PASS or FAIL line per registered check (a check
left without a verdict is a FAIL).

``ctx`` gives the chosen scale's parameters, the seeds, ``ctx.run_arm(...)`` to play one engine run into
``DIR/runs/<arm>/<param>=<value>…/seed=<s>/``, ``ctx.record(...)`` for the tidy result rows, and the
writers of ``results.parquet`` / ``results.md``. Slopes are fitted per seed on log axes and summarised with a
t confidence interval over seeds.
"""
import copy
import io
import json
import math
import os
import pathlib
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import config as C
from ..engine import run as engine_run
from ..errors import ConfigError
from ..outdir import makedirs, write_bytes, write_text
from ..validate import INT64_MAX, INT64_MIN, in_int64, int_text
from ..shipped import read_data
from ..trace import read_table



@dataclass
class Check:
    """One pre-registered check; ``passed``/``measured`` are filled by ``ExperimentRun.verdict`` after the runs."""

    name: str
    quantity: str
    prediction: str
    tolerance: str
    control: str
    passed: bool = None
    measured: str = "not evaluated"

    def line(self):
        word = "PASS" if self.passed else "FAIL"
        return f"{word} `{self.name}` — {self.measured} (predicted {self.prediction}; tolerance {self.tolerance})"


def load_spec(name):
    """The experiment's spec ``data/configs/experiments/<name>.toml``, shipped with the package."""
    return C.tomllib.loads(read_data("configs", "experiments", f"{name}.toml"))


def _param_value(name, key, raw, default):
    """The ``--set key=raw`` value of parameter ``key`` of experiment ``name``, of the type its spec gives it (an
    integer where the spec has one, within int64; a number; a list of numbers; a string), or one ConfigError."""
    value = C.parse_value(key, raw)
    kind = type(default)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if kind is list:
        ok = isinstance(value, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        values = value if ok else []
    else:
        values = [value]
    if ok and any(isinstance(x, int) and not isinstance(x, bool) and not in_int64(x)
                  for x in values):
        raise ConfigError(f"parameter {key} of experiment {name} must lie within 64-bit integers "
                          f"[{int_text(INT64_MIN)}, {int_text(INT64_MAX)}], got {raw}")
    if not ok:
        what = {int: "an integer", float: "a number", list: "a list of numbers", str: "a string",
                bool: "true or false"}.get(kind, kind.__name__)
        raise ConfigError(f"parameter {key} of experiment {name} must be {what} (like its default "
                          f"{default!r}), got {raw}")
    return value


class ExperimentRun:
    """One experiment invocation: parameters, seeds, output folder, result rows, stage timings."""

    def __init__(self, name, scale="full", out=None, sets=(), seeds=None, log=print):
        if scale not in ("full", "small"):
            raise ConfigError(f"--scale must be 'full' or 'small', got {scale!r}")
        spec = load_spec(name)
        self.name, self.scale, self.log = name, scale, log
        self.description = spec["experiment"]["description"]
        self.params = dict(spec[scale])
        scale_seeds = self.params.pop("seeds", None)          # a scale may set its own default seed count
        scale_first = self.params.pop("first_seed", None)     # and its own first seed
        self.config = {sec: dict(v) for sec, v in spec.get("config", {}).items()}
        self.config_sets = []
        for item in sets or ():
            if "=" not in item:
                raise ConfigError(f"--set expects key=value or section.key=value, got {item!r}")
            key, raw = item.split("=", 1)
            key = key.strip()
            if "." in key:
                self.config_sets.append(f"{key}={raw}")
            elif key in self.params:
                self.params[key] = _param_value(name, key, raw, self.params[key])
            else:
                raise ConfigError(f"unknown parameter {key!r} of experiment {name}; accepted: "
                                  f"{', '.join(self.params)} or section.key=value for the run config")
        if seeds is None:
            seeds = spec["experiment"].get("seeds", 1) if scale_seeds is None else scale_seeds
        n_seeds = seeds
        if not isinstance(n_seeds, int) or n_seeds < 1:
            raise ConfigError(f"--seeds must be an integer >= 1, got {n_seeds!r}")
        # a confirmatory design runs on seeds no earlier run used
        first = spec["experiment"].get("first_seed", 0) if scale_first is None else scale_first
        self.seeds = list(range(first, first + n_seeds))
        self.out = pathlib.Path(out or f"runs/experiment-{name}-{scale}-{time.strftime('%Y%m%d-%H%M%S')}")
        self.rows = []
        self._load0 = load_probe()
        self.stages = []
        self.notes = []
        self.figures = []
        self.checks = {}
        self._runs_started = False
        C.resolve(C.apply_overrides(self.config, self.config_sets))   # a bad --set fails before any run

    @property
    def shared(self):
        """The experiment's shared engine config with the command line's ``--set SECTION.KEY`` applied, resolved:
        the typed spec its predictions read (``ctx.shared.task.k``), so a prediction and the runs it predicts see
        the same values."""
        if getattr(self, "_shared", None) is None:
            self._shared = C.resolve(C.apply_overrides(self.config, self.config_sets))
        return self._shared

    # -- pre-registered checks ----------------------------------------------------------------------------
    def predict(self, name, quantity, prediction, tolerance, control):
        """Register a check before any run (see the module docstring)."""
        if self._runs_started:
            raise RuntimeError(f"check {name!r} registered after the first run: predictions come first")
        self.checks[name] = Check(name, quantity, prediction, tolerance, control)
        self.log(f"[{self.name}] check {name}: {quantity} — predicted {prediction}, tolerance {tolerance}; "
                 f"control: {control}")

    def verdict(self, name, passed, measured):
        """Report check ``name`` as measured: ``passed`` (bool) and what was measured (text)."""
        check = self.checks[name]
        check.passed, check.measured = bool(passed), measured
        self.log(f"[{self.name}] {check.line()}")

    def _preregister(self):
        if not self._runs_started:
            self._runs_started = True
            makedirs(self.out)
            doc = {"experiment": self.name, "scale": self.scale, "params": self.params,
                   "checks": [{k: v for k, v in asdict(c).items() if k not in ("passed", "measured")}
                              for c in self.checks.values()]}
            write_text(self.out / "checks.json", json.dumps(doc, indent=2) + "\n")

    # -- runs -------------------------------------------------------------------------------------------
    def run_arm(self, arm, cell, seed, overrides):
        """One engine run of ``arm`` at parameter values ``cell`` (dict) and ``seed``; ``overrides`` is a dict
        {"section.key": value} applied over the shared config. Returns (summary, run folder)."""
        self._preregister()
        folder = self.out / "runs" / arm
        for key, value in cell.items():
            folder = folder / f"{key}={_fmt(value)}"
        folder = folder / f"seed={seed}"
        cfg = copy.deepcopy(self.config)
        for key, value in overrides.items():
            sec, k = key.split(".", 1)
            cfg.setdefault(sec, {})[k] = value
        cfg.setdefault("run", {})["progress"] = False
        resolved = C.to_toml(C.resolve(C.apply_overrides(cfg, self.config_sets)))
        done = folder / "summary.json"
        same = (folder / "config.toml").is_file() and (folder / "config.toml").read_text() == resolved
        if getattr(self, "resume", False) and same:
            if done.exists():
                return json.loads(done.read_text()), folder   # finished earlier with this very config: reuse
            if any((folder / "checkpoints").glob("ckpt-*.npz")):
                try:
                    return engine_run(None, folder, resume=True, sets=self.config_sets), folder
                except ConfigError:
                    pass                                      # an unusable partial run: start the arm afresh
        summary = engine_run(cfg, folder, overwrite=True, sets=self.config_sets)
        return summary, folder

    def record(self, arm, cell, seed, **measures):
        self.rows.append({"experiment": self.name, "arm": arm, **cell, "seed": seed, **measures})

    @contextmanager
    def stage(self, label):
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.stages.append((label, dt))
        self.log(f"[{self.name}] {label}: {dt:.1f} s")

    # -- outputs ----------------------------------------------------------------------------------------
    def write(self, table_md, slopes=()):
        """results.parquet (the tidy rows), results.md (settings, table, slopes, notes, figures, timings)."""
        makedirs(self.out)
        cols = sorted({k for r in self.rows for k in r}, key=lambda c: (c not in ("experiment", "arm"), c))
        table = pa.table({c: [r.get(c) for r in self.rows] for c in cols})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_bytes(self.out / "results.parquet", sink.getvalue().to_pybytes())
        lines = [f"# {self.name} ({self.scale} scale)", "", self.description, "",
                 f"Parameters: `{json.dumps(self.params)}`; seeds: {len(self.seeds)}; config overrides: "
                 f"`{self.config_sets or 'none'}`", "", table_md, ""]
        if slopes:
            lines += ["| fit | measured slope | 95% CI over seeds | theory |", "|---|---|---|---|"]
            for s in slopes:
                lines.append(f"| {s['label']} | {s['slope']:.3f} | [{s['lo']:.3f}, {s['hi']:.3f}] | {s['theory']} |")
            lines.append("")
        if self.checks:
            lines += ["## Pre-registered checks", "", "| check | quantity | prediction | tolerance | control |",
                      "|---|---|---|---|---|"]
            lines += [f"| `{c.name}` | {c.quantity} | {c.prediction} | {c.tolerance} | {c.control} |"
                      for c in self.checks.values()]
            lines += ["", "## Verdict", ""] + [f"- {c.line()}" for c in self.checks.values()] + [""]
            write_text(self.out / "verdict.json", json.dumps(
                {"experiment": self.name, "scale": self.scale, "seeds": len(self.seeds), "first_seed": self.seeds[0],
                 "checks": [asdict(c) for c in self.checks.values()]},
                indent=2) + "\n")
        notes = self.notes + [machine_load(self._load0)]
        lines += ["## What came out", ""] + [f"- {n}" for n in notes] + [""]
        if self.figures:
            lines += ["## Figures", ""] + [f"![{f.stem}](figures/{f.name})" for f in self.figures] + [""]
        lines += ["## Wall time", ""] + [f"- {label}: {dt:.1f} s" for label, dt in self.stages]
        write_text(self.out / "results.md", "\n".join(lines) + "\n")
        for s in slopes:
            self.log(f"[{self.name}] {s['label']}: slope {s['slope']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}] "
                     f"(theory: {s['theory']})")

    def figure(self, fig, stem):
        folder = makedirs(self.out / "figures")
        path = folder / f"{stem}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        write_bytes(path, buf.getvalue())
        self.figures.append(path)
        return path


def load_probe():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return os.getloadavg(), time.perf_counter(), usage.ru_utime + usage.ru_stime


def machine_load(start):
    """Wall times mean little without the machine's load: other processes share the cores. The process's own
    CPU use over the run (out of 100% × cores) shows how much of the machine it actually got."""
    load0, t0, cpu0 = start
    load1, t1, cpu1 = load_probe()
    fmt = lambda la: " / ".join(f"{x:.2f}" for x in la)  # noqa: E731
    return (f"machine load average (1 / 5 / 15 min) at the start {fmt(load0)}, at the end {fmt(load1)}, on "
            f"{os.cpu_count()} cores; this process used {100 * (cpu1 - cpu0) / max(t1 - t0, 1e-9):.0f}% CPU over "
            f"the experiment ({100 * os.cpu_count()}% = every core). The wall times below include any contention.")


def _fmt(value):
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def fit_slope(x, y, seeds, label, theory, log_x=True):
    """Least-squares slope of log y against log x (or x, with ``log_x=False``), fitted per seed; returns the
    mean slope and a 95% t interval over seeds (with one seed, the regression's own standard error)."""
    x, y, seeds = np.asarray(x, float), np.asarray(y, float), np.asarray(seeds)
    ok = (y > 0) & np.isfinite(y) & ((x > 0) | (not log_x))
    X = np.log(x[ok]) if log_x else x[ok]
    Y, S = np.log(y[ok]), seeds[ok]
    slopes = []
    for s in np.unique(S):
        m = S == s
        if m.sum() >= 2 and np.ptp(X[m]) > 0:
            slopes.append(np.polyfit(X[m], Y[m], 1)[0])
    if not slopes:
        return {"label": label, "slope": float("nan"), "lo": float("nan"), "hi": float("nan"), "theory": theory,
                "per_seed": []}
    slopes = np.array(slopes)
    mean = float(slopes.mean())
    if len(slopes) > 1:
        from scipy import stats
        half = float(stats.t.ppf(0.975, len(slopes) - 1) * slopes.std(ddof=1) / math.sqrt(len(slopes)))
    else:
        coef, cov = np.polyfit(X, Y, 1, cov=True) if len(X) > 2 else (None, None)
        half = float(1.96 * math.sqrt(cov[0, 0])) if cov is not None else float("nan")
    return {"label": label, "slope": mean, "lo": mean - half, "hi": mean + half, "theory": theory,
            "per_seed": slopes.tolist()}


def model_band(sd, seeds, margin):
    """The tolerance of a check against a model: 3 standard deviations of a ``seeds``-seed mean of a quantity
    whose per-seed standard deviation under the model is ``sd``, plus ``margin`` (what the model leaves out)."""
    return 3.0 * sd / math.sqrt(seeds) + margin


def first_reaching(run_folder, eps, column):
    """The counter ``column`` at the first evaluation whose test error ≤ eps (None if never)."""
    ev = read_table(pathlib.Path(run_folder) / "eval").to_pydict()
    for err, value in zip(ev["test_error"], ev[column]):
        if err <= eps:
            return value
    return None


def pyplot():
    """matplotlib.pyplot with a headless backend, or a clear error naming the extra to install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("the experiments draw figures with matplotlib (a dependency of onlinepg that is missing "
                          "here): pip install matplotlib") from None
    return plt


def log_axes(ax, xlabel, ylabel, title, legend_size=7):
    """Log-log axes with their labels, title and legend: the finish every query-law panel shares."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)


def pass_at_k_figure(ctx, stem, title, base, arms, legend_size=8):
    """One pass@k figure (the experiments that read passk/): the base's curve ``base`` = (k, pass@k) dashed, and
    each of ``arms`` = [(k, pass@k, colour, label)], on log₂ k axes; written as ``stem`` through ``ctx.figure``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.6, 4.4))
    ax.plot(*base, "k--", lw=1.5, label="base")
    for k, curve, colour, label in arms:
        ax.plot(k, curve, "-", color=colour, lw=1.7, label=label)
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("k (samples per context)")
    ax.set_ylabel("pass@k on the held-out contexts (exact)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=legend_size)
    ctx.figure(fig, stem)
    plt.close(fig)


def markdown_table(rows, columns, fmt=None):
    fmt = fmt or {}
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(fmt.get(c, _cell)(r.get(c)) for c in columns) + " |")
    return "\n".join(out)


def _cell(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def mean_over_seeds(rows, keys, measures):
    """Group rows by ``keys`` and average each of ``measures`` over seeds (None values skipped)."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        agg = dict(zip(keys, key))
        for m in measures:
            vals = [r[m] for r in rs if r.get(m) is not None]
            agg[m] = float(np.mean(vals)) if vals else None
        agg["seeds"] = len(rs)
        out.append(agg)
    return out


def echo(msg):
    print(msg, file=sys.stderr, flush=True)
