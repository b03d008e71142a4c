"""onlinepg bench — onlinepg against its peers (NumPy, PyTorch, Vowpal Wabbit, River, scikit-learn), its scaling,
this CPU's limit for the innermost loop, start-up and memory; the same as ``python -m bench`` from the repository.

The benchmarks live in the repository's top-level ``bench/`` folder, which is not part of the installed package:
this command finds it next to the ``onlinepg`` package of a source checkout (an editable install) and runs it.
"""
import runpy
import sys
from pathlib import Path

from ..errors import ConfigError
# One-way: this command only locates bench/ and runs it (runpy); bench uses onlinepg but never imports this
# module. The options both parse are defined once, in ._bench_options.
from ._bench_options import add_arguments  # noqa: F401 - the command's options (onlinepg.cli calls it)

HELP = ("benchmarks against the peers, scaling, the CPU's limit, start-up and memory, fig1 end to end (writes "
        "bench.json, bench.md)")


def _repo_root():
    """The source checkout holding this package, if it also holds bench/__main__.py; else None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "bench" / "__main__.py").is_file() and (root / "onlinepg").is_dir() else None


def _orchestrator():
    """The globals of the checkout's bench/__main__.py, run (not imported as a dependency) with runpy."""
    root = _repo_root()
    if root is None:
        raise ConfigError("onlinepg bench needs the repository's bench/ folder, which is not installed with the "
                          f"package (looked next to {Path(__file__).resolve().parents[1]}); run it from a source "
                          "checkout installed with `pip install -e .[bench]`, or `python -m bench` in the "
                          "repository root")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    # the module's code with __package__ 'bench' (its relative imports work), but not as __main__: its main() is
    # not run, so the command calls run() with its own prog name
    orchestrator = runpy.run_module("bench.__main__", run_name="bench.__main__")
    # another top-level 'bench' (some other project's) could shadow ours: refuse rather than run it
    found = orchestrator.get("__file__")
    if found is None or Path(found).resolve().parent != root / "bench":
        raise ConfigError(f"onlinepg bench: `import bench` found {found}, not {root / 'bench'}; run "
                          "`python -m bench` from the repository root instead")
    return orchestrator


def main(args):
    return _orchestrator()["run"](args, prog="onlinepg bench")
