"""`onlinepg plot`: every figure kind is written as a non-empty PNG from a test-sized engine run, likelihoods
below float64's range are drawn where they belong, and a missing matplotlib is one clear error."""
import sys

import numpy as np
import pytest

import onlinepg as op
from onlinepg import config as C
from onlinepg import lq as L
from onlinepg import plots as P
from onlinepg.cli import main as cli
from figure_check import assert_figure

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"
RUN = {"task": {"kind": "teacher", "d": 6, "k": 5, "N": 8, "contexts": "mixture", "centres": 4,
                "test_contexts": 64},
       "base": {"kind": "pretrain", "steps": 5, "batch": 32},
       "algo": {"name": "pg_batch", "reward": "pm1", "baseline": "batch_mean", "lr_rule": "adagrad", "batch": 32},
       "run": {"rounds": 30, "eval_every": 5, "checkpoint_every": 10, "keep_checkpoints": 0, "progress": False}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("plots") / "run"
    op.run(RUN, out)
    return out


def assert_png(path):
    assert path.read_bytes()[:8] == PNG, path
    img = assert_figure(path)
    # plots.py draws at a fixed DPI on one of its figure sizes (no tight bounding box): the exact pixel size
    sizes = {(round(w * P.DPI), round(h * P.DPI)) for w, h in (P.SIZE, (10.0, 4.0), (7.0, 4.4))}
    assert (img.shape[1], img.shape[0]) in sizes, (path, img.shape)


def test_every_figure_kind_is_written(run_dir, capsys):
    assert cli(["plot", str(run_dir), "--contexts", "400"]) == 0
    out = capsys.readouterr().out
    for name in P.FIGURES:
        path = run_dir / "figures" / f"{name}.png"
        assert f"wrote {path}" in out
        assert_png(path)


def test_profiles_cover_base_and_checkpoints(run_dir):
    profiles, n = P.run_profiles(run_dir, contexts=100, max_models=3)
    assert [lab for lab, _ in profiles] == ["base", "round 10", "round 30"] and n == 100
    profiles, _ = P.run_profiles(run_dir, contexts=100, max_models=10)
    assert [lab for lab, _ in profiles] == ["base", "round 10", "round 20", "round 30"]


def test_run_without_tracked_contexts_skips_that_figure(tmp_path):
    cfg = {**RUN, "run": {**RUN["run"], "rounds": 10, "tracked": "none"}}
    op.run(cfg, tmp_path / "r")
    written, skipped = P.plot_run(tmp_path / "r", contexts=100, out=tmp_path / "figs")
    assert {p.stem for p in written} == set(P.FIGURES) - {"tracked"}
    assert len(skipped) == 1 and "tracked" in skipped[0]
    for p in written:
        assert_png(p)


def test_likelihoods_below_float64_are_drawn_in_place(tmp_path):
    """log p ≈ −2300 (p ≈ 10^−1000): the axes run in log10 with 10^k labels instead of collapsing to 0."""
    rng = np.random.default_rng(0)
    ll = rng.uniform(-2400.0, -2200.0, 500)
    profiles = [("base", L.Likelihoods(ll, ll / 300)), ("round 9", L.Likelihoods(ll + 100.0, ll / 400))]
    cfg = C.resolve({})
    for make in (P.likelihood_cdf_figure, P.lq_figure, P.alpha_tail_figure, P.histogram_figure):
        fig = make(profiles, cfg, 500)
        ax = fig.axes[0]
        lo, hi = ax.get_xlim() if make is not P.lq_figure else ax.get_ylim()
        assert lo < -900 and hi <= 1, (make.__name__, lo, hi)   # log10 units, not underflowed zeros
        path = P.save(fig, tmp_path / f"{make.__name__}.png")
        assert_png(path)


def test_missing_matplotlib_is_one_clear_error(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # makes `import matplotlib` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(op.ConfigError, match="pip install matplotlib"):
        P.plot_run(run_dir)
    assert cli(["plot", str(run_dir)]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err


def test_bad_run_folder(tmp_path, capsys):
    assert cli(["plot", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
