"""README's results table, generated from the committed results of the experiments.

Each experiment's full-scale results live in ``data/results/<name>/`` of the repository, written by one command:
``onlinepg experiment <name> --scale full --out data/results/<name>`` (the engine runs under ``runs/`` inside
it are not committed; ``results.md``, ``results.parquet``, ``checks.json``, ``verdict.json`` and ``figures/``
are). The table below is rendered from those ``verdict.json`` files only — every number in it is one a results
file holds — and a test checks that README's copy (between the markers) is current.

Plain Python: no engine import, so ``onlinepg results`` starts instantly.
"""
import json
import pathlib
import tomllib

from ..shipped import read_data
from . import NAMES

START = "<!-- results-table:start -->"
END = "<!-- results-table:end -->"


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(results_dir, link_prefix="data/results"):
    """The markdown table of every experiment's verdicts found under ``results_dir``."""
    results_dir = pathlib.Path(results_dir)
    rows = ["| experiment | scale, seeds | checks passed | verdicts (as measured) |", "|---|---|---|---|"]
    for name in NAMES:
        path = results_dir / name / "verdict.json"
        if not path.is_file():
            rows.append(f"| `{name}` | — | — | not yet run at full scale with the current design |")
            continue
        doc = json.loads(path.read_text())
        checks = doc["checks"]
        passed = sum(bool(c["passed"]) for c in checks)
        spec = tomllib.loads(read_data("configs", "experiments", f"{name}.toml"))["experiment"]
        weak = spec.get("no_power", {})     # checks found to pass for any plausible engine: labelled, not removed
        lines = "<br>".join(_cell(f"{'PASS' if c['passed'] else 'FAIL'} `{c['name']}`"
                                  + (f" (no power: {weak[c['name']]})" if c["name"] in weak else "")
                                  + f": {c['measured']}") for c in checks)
        seeds, first = doc.get("seeds"), doc.get("first_seed", 0)
        seed_text = "" if seeds is None else (f", {seeds} seed(s)" if not first else
                                              f", seeds {first}–{first + seeds - 1} (fresh)")
        later = spec.get("superseded_by")
        status = f"; superseded by [`{later}`]({link_prefix}/{later}/results.md), verdicts kept as registered" \
            if later else ""
        rows.append(f"| [`{name}`]({link_prefix}/{name}/results.md) | {doc['scale']}{seed_text}{status} | "
                    f"{passed} of {len(checks)}" + (f" ({len(weak)} without power)" if weak else "") + f" | {lines} |")
    return "\n".join(rows)


def replace_block(text, table):
    """``text`` with the block between the markers replaced by ``table``."""
    if START not in text or END not in text:
        raise ValueError(f"the markers {START} / {END} are missing")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def current_block(text):
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")
