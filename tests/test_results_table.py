"""README's results table is generated from the committed results (data/results/<name>/verdict.json) and current."""
import json
import pathlib

from onlinepg.cli import main
from onlinepg.experiments import NAMES
from onlinepg.experiments import results as R

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_results_table_is_generated_from_the_committed_results():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert R.current_block(text) == R.render(ROOT / "data" / "results"), \
        "regenerate it: onlinepg results --readme README.md"


def test_every_committed_verdict_belongs_to_an_experiment_and_its_checks_were_registered():
    for path in (ROOT / "data" / "results").glob("*/verdict.json"):
        name = path.parent.name
        assert name in NAMES
        verdict = json.loads(path.read_text())
        registered = json.loads((path.parent / "checks.json").read_text())
        assert verdict["experiment"] == registered["experiment"] == name and verdict["scale"] == "full"
        assert [c["name"] for c in verdict["checks"]] == [c["name"] for c in registered["checks"]]
        assert (path.parent / "results.md").is_file()


def _write(tmp_path, name, checks):
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "verdict.json").write_text(json.dumps({"experiment": name, "scale": "full", "seeds": 3,
                                                     "checks": checks}))


def test_render_reports_each_verdict_as_measured(tmp_path):
    _write(tmp_path, "queries", [{"name": "slope", "passed": True, "measured": "slope 0.98 | x"},
                                 {"name": "flattening", "passed": False, "measured": "share 0.2"}])
    table = R.render(tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| [`queries`]"))
    assert "| full, 3 seed(s) | 1 of 2 |" in row
    assert "PASS `slope`: slope 0.98 \\| x<br>FAIL `flattening`: share 0.2" in row
    assert sum("not yet run" in line for line in table.splitlines()) == len(NAMES) - 1


def test_render_labels_superseded_experiments_and_checks_without_power(tmp_path):
    _write(tmp_path, "mistakes", [{"name": "slope", "passed": True, "measured": "0.95"}])
    _write(tmp_path, "ablations", [{"name": "iw_clip_cost", "passed": True, "measured": "0.5"},
                                   {"name": "other", "passed": True, "measured": "1"}])
    rows = {line.split("`")[1]: line for line in R.render(tmp_path).splitlines() if line.startswith("| [`")}
    assert "superseded by [`mistakes-log`]" in rows["mistakes"] and "verdicts kept as registered" in rows["mistakes"]
    assert "| 2 of 2 (4 without power) |" in rows["ablations"]
    assert "PASS `iw_clip_cost` (no power: one-sided" in rows["ablations"]
    assert "PASS `other`: 1" in rows["ablations"]


def test_cli_rewrites_and_checks_the_block(tmp_path, capsys):
    _write(tmp_path / "res", "barrier", [{"name": "orm_exponential", "passed": True, "measured": "1.2"}])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{R.START}\nold\n{R.END}\ntail\n")
    args = ["results", "--results", str(tmp_path / "res"), "--readme", str(readme)]
    assert main(args + ["--check"]) == 1
    assert main(args) == 0
    assert main(args + ["--check"]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("tail\n") and "PASS `orm_exponential`: 1.2" in text
    readme.write_text("no markers\n")
    assert main(args) == 2
    assert "markers" in capsys.readouterr().err
