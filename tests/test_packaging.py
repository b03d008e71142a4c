"""Packaging: light `--help`, lazy public names, files read from the package (not the checkout), `bench` outside it.

The wheel itself is built, installed into a fresh venv and run from another directory by `.ci/run`.
"""
import pathlib
import subprocess
import sys

import pytest

import onlinepg
from onlinepg import cli
from onlinepg.errors import ConfigError
from onlinepg.shipped import data_file, read_data

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("numba", "numpy", "scipy", "pyarrow", "llvmlite")


def test_help_imports_nothing_heavy():
    """`onlinepg --help` and every `onlinepg COMMAND --help` (all in one process) import no NumPy and no Numba."""
    names = [name for name, _ in cli._commands()]
    assert {"run", "sweep", "experiment", "lq", "plot", "bench"} <= set(names)
    code = f"""
import sys
from onlinepg import cli
for argv in [["--help"]] + [[name, "--help"] for name in {names!r}]:
    try:
        cli.main(argv)
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "", f"--help imported {res.stdout.splitlines()[-1]}"


def test_console_script_help():
    script = pathlib.Path(sys.executable).parent / "onlinepg"
    if not script.exists():
        pytest.skip("no onlinepg console script beside this interpreter")
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("usage: onlinepg"), res.stderr


def test_experiment_names_without_the_engine():
    code = "import sys; from onlinepg.experiments import NAMES; print(','.join(NAMES), 'numba' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    names, numba_loaded = res.stdout.split()
    assert numba_loaded == "False" and {"fig1", "mistakes", "bandit-n1"} <= set(names.split(","))


def test_public_names_resolve_lazily():
    for name in onlinepg.__all__:
        assert getattr(onlinepg, name) is not None, name
    from onlinepg import Policy, kernels, lq           # noqa: F401 (the documented import forms still work)
    from onlinepg.policy import Policy as P
    assert Policy is P and set(onlinepg.__all__) <= set(dir(onlinepg))
    with pytest.raises(AttributeError, match="no_such_name"):
        onlinepg.no_such_name


def test_every_data_file_is_read_from_the_package():
    """Every config, experiment spec and sweep under data/ is reachable through onlinepg.shipped, unchanged."""
    paths = sorted((ROOT / "data" / "configs").rglob("*.toml")) + sorted((ROOT / "data" / "sweeps").rglob("*.toml"))
    assert len(paths) >= 10
    for path in paths:
        parts = path.relative_to(ROOT / "data").parts
        assert data_file(*parts).is_file(), parts
        assert read_data(*parts) == path.read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match="configs/no-such.toml is not among the files shipped"):
        read_data("configs", "no-such.toml")


def test_every_experiment_has_a_shipped_spec():
    from onlinepg.experiments import NAMES
    from onlinepg.experiments.common import load_spec
    for name in NAMES:
        spec = load_spec(name)
        assert {"experiment", "full", "small"} <= set(spec), name


def test_no_module_reads_a_path_relative_to_the_checkout():
    """Shipped files are read with importlib.resources (onlinepg.shipped); only `bench`, which runs the checkout's
    bench/ folder by design, may look at where the package sits."""
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "onlinepg").rglob("*.py"))
                 if "__file__" in p.read_text(encoding="utf-8") and p.name != "bench.py"]
    assert offenders == []


def test_bench_outside_a_checkout_is_one_error_line(monkeypatch, capsys):
    """From a wheel there is no bench/ folder: one `onlinepg: error:` line saying how to run it, exit 2."""
    from onlinepg.commands import bench
    monkeypatch.setattr(bench, "_repo_root", lambda: None)
    assert cli.main(["bench", "--quick"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("onlinepg: error: "), captured.err
    assert "source checkout" in lines[0] and "python -m bench" in lines[0]
    assert captured.out == ""


def test_experiment_without_matplotlib_fails_before_any_run(monkeypatch, tmp_path):
    from onlinepg.experiments import run_experiment
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # `import matplotlib` now raises ImportError
    with pytest.raises(ConfigError, match="pip install matplotlib"):
        run_experiment("fig1", "small", out=tmp_path / "e")
    assert not (tmp_path / "e").exists()
