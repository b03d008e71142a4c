"""Rows, sections and their two renderings (markdown table, JSON) for ``python -m bench``.

Every figure the orchestrator prints is a :class:`Row` of a :class:`Section`. A row either carries a value or
says ``skipped (reason)``: a missing peer is never dropped silently. Rows with a target carry a PASS/MISS
verdict, and a MISS carries a note saying why and what would close it.
"""
import os
import time
from dataclasses import asdict, dataclass, field

# The environment as the bench found it, before any peer was imported (importing torch sets KMP_* variables,
# which changed a child process's peak RSS from 247 to 293 MiB): measured subprocesses get this one.
PRISTINE_ENV = dict(os.environ)


@dataclass
class Row:
    """One line of a section's table. ``value``/``ratio`` are display strings; ``data`` holds the raw numbers
    that go to bench.json."""

    what: str
    value: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""          # "PASS", "MISS", "ERROR" or "" (no target)
    note: str = ""
    skipped: str = ""          # non-empty: the row was not measured, and this says why
    data: dict = field(default_factory=dict)


@dataclass
class Section:
    """A numbered bench section: its rows plus what the machine was doing meanwhile."""

    number: int
    title: str
    setup: str = ""
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    load: dict = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, *args, **kwargs):
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def skip(self, what, reason):
        """A row that could not be measured; ``reason`` is shown as ``skipped (reason)``."""
        return self.add(what, skipped=reason)


def verdict(ok):
    return "PASS" if ok else "MISS"


def system_busy_s():
    """Seconds the whole machine has spent busy since boot (/proc/stat: all but idle and iowait), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    """CPU seconds of this process plus its waited-for children (subprocess probes are ours, not load)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMeter:
    """Measures the cores *other* processes kept busy while a section ran: the machine's busy time minus our
    own (and our finished subprocesses'). Parallel code stalls a whole scheduler slice whenever another
    process holds one of 2 cores, so the figure is reported beside the results rather than absorbed."""

    def __enter__(self):
        self.busy0, self.own0, self.wall0 = system_busy_s(), children_cpu_s(), time.perf_counter()
        self.load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return self

    def __exit__(self, *exc):
        busy1, own1, wall1 = system_busy_s(), children_cpu_s(), time.perf_counter()
        self.seconds = wall1 - self.wall0
        self.others = None
        if self.busy0 is not None and busy1 is not None and self.seconds > 0:
            self.others = max(0.0, (busy1 - self.busy0) - (own1 - self.own0)) / self.seconds
        return False

    def as_dict(self):
        return {"other_processes_busy_cores": self.others, "loadavg_1min_before": self.load0,
                "seconds": self.seconds}


def _cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def section_markdown(sec):
    """The section as a markdown heading, its setup line, one table and its notes."""
    out = [f"### {sec.number}. {sec.title}", ""]
    if sec.setup:
        out += [sec.setup, ""]
    show_ratio = any(r.ratio for r in sec.rows)
    show_target = any(r.target for r in sec.rows)
    head = ["measure", "value"] + (["ratio"] if show_ratio else []) + (["target", "verdict"] if show_target else [])
    head.append("note")
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sec.rows:
        cells = [r.what, f"skipped ({r.skipped})" if r.skipped else r.value]
        if show_ratio:
            cells.append(r.ratio)
        if show_target:
            cells += [r.target, f"**{r.verdict}**" if r.verdict else ""]
        cells.append(r.note)
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    others = sec.load.get("other_processes_busy_cores")
    if others is not None:
        warn = " — WARNING: machine not idle, timings are pessimistic" if others > 0.1 else ""
        out += ["", f"Load: other processes kept {others:.2f} cores busy during this section "
                    f"({sec.load['seconds']:.0f} s){warn}."]
    for note in sec.notes:
        out += ["", note]
    out.append("")
    return "\n".join(out)


def targets_markdown(sections):
    """Every row that has a target, gathered in one table at the top of the report."""
    rows = [(s, r) for s in sections for r in s.rows if r.target]
    out = ["| target | measured | verdict |", "|---|---|---|"]
    for s, r in rows:
        measured = f"skipped ({r.skipped})" if r.skipped else (r.ratio or r.value)
        out.append(f"| {_cell(r.what)}: {_cell(r.target)} | {_cell(measured)} | "
                   f"**{r.verdict or 'not measured'}** |")
    return "\n".join(out)


def document(sections, header_lines):
    """The whole report: header, targets summary, then one table per section."""
    parts = list(header_lines) + ["", "**Targets**", "", targets_markdown(sections), ""]
    parts += [section_markdown(s) for s in sections]
    return "\n".join(parts)


def as_json(sections):
    return [dict(number=s.number, title=s.title, setup=s.setup, notes=s.notes, load=s.load, seconds=s.seconds,
                 rows=[asdict(r) for r in s.rows]) for s in sections]


def human(x, digits=3):
    """1234567 → '1.23 M', 12345 → '12.3 k', 1234.5 → '1,234', 12.345 → '12.3'."""
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e4, " k")):
        if abs(x) >= scale:
            return f"{x / (1e3 if suffix == ' k' else scale):.{digits}g}{suffix}"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.{digits}g}"
