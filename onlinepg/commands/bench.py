"""onlinepg bench — onlinepg against its peers (NumPy, PyTorch, Vowpal Wabbit, River, scikit-learn), its scaling,
this CPU's limit for the innermost loop, start-up and memory; the same as ``python -m bench`` from the repository.

The benchmarks live in the repository's top-level ``bench/`` folder, which is not part of the installed package:
this command finds it next to the ``onlinepg`` package of a source checkout (an editable install) and runs it.
"""
import importlib
import sys
from pathlib import Path

from ..errors import ConfigError

HELP = ("benchmarks against the peers, scaling, the CPU's limit, start-up and memory, fig1 end to end (writes "
        "bench.json, bench.md)")


def _repo_root():
    """The source checkout holding this package, if it also holds bench/__main__.py; else None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "bench" / "__main__.py").is_file() and (root / "onlinepg").is_dir() else None


def _orchestrator():
    root = _repo_root()
    if root is None:
        raise ConfigError("onlinepg bench needs the repository's bench/ folder, which is not installed with the "
                          f"package (looked next to {Path(__file__).resolve().parents[1]}); run it from a source "
                          "checkout installed with `pip install -e .[bench]`, or `python -m bench` in the "
                          "repository root")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module("bench.__main__")
    # another top-level 'bench' (some other project's) could shadow ours: refuse rather than run it
    if Path(module.__file__).resolve().parent != root / "bench":
        raise ConfigError(f"onlinepg bench: `import bench` found {module.__file__}, not {root / 'bench'}; run "
                          "`python -m bench` from the repository root instead")
    return module


def add_arguments(p):
    """The options of ``onlinepg bench`` and ``python -m bench`` (one definition; light enough for --help)."""
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run: every row, not the reference "
                                                        "figures)")
    p.add_argument("--out", help="output folder for bench.json and bench.md (default runs/bench-<timestamp>)")
    p.add_argument("--sections", default="1,2,3,4,5,6", help="comma-separated section numbers (default all)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="first wait up to SECONDS for the 1-minute load average to fall below 0.5")


def main(args):
    return _orchestrator().run(args, prog="onlinepg bench")
