"""README stays true: the config reference is the schema's, and every example config resolves."""
import pathlib
import re

from onlinepg import config as C

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_config_reference_is_current():
    text = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- config-reference:start -->\n(.*)\n<!-- config-reference:end -->", text, re.S).group(1)
    assert table == C.reference_table(), "regenerate README's table from onlinepg.config.reference_table()"


def test_every_example_config_resolves():
    paths = sorted((ROOT / "data" / "configs").glob("*.toml"))
    assert len(paths) >= 7
    for path in paths:
        C.resolve(C.load(path))


def test_every_experiment_spec_has_a_valid_run_config():
    paths = sorted((ROOT / "data" / "configs" / "experiments").glob("*.toml"))
    assert len(paths) >= 6
    for path in paths:
        spec = C.load(path)
        assert {"experiment", "full", "small"} <= set(spec), path.name
        C.resolve(spec.get("config", {}))
