"""Reading what the streaming engine wrote: a run folder's config, its weights (base and checkpoints), and
the task they belong to. Used by ``onlinepg lq`` and ``onlinepg plot``.

A *source* is a run folder (``config.toml`` inside) or a bare weights ``.npz`` (``onlinepg.save_policy``
output, a run's ``base.npz`` or ``checkpoints/ckpt-<round>.npz``). A bare weights file carries the feature map
but not the task (no teacher, no y*), so its task comes from ``--config`` or, when the file sits inside a run
folder, from that run's ``config.toml``.
"""
import os
import pathlib
import re
from dataclasses import dataclass

import numpy as np

from . import config as C
from .build import build_task
from .help_defaults import WHICH_HELP
from .errors import ConfigError
from .weights import load_policy
from .policy import Policy

CKPT = re.compile(r"ckpt-(\d+)\.npz$")


@dataclass
class Source:
    """Weights to evaluate and the task that defines their contexts and correct responses."""

    policy: Policy
    weights: pathlib.Path
    round: object            # int, or None when the file does not say
    cfg: dict                # the resolved run config
    task: object             # TeacherTask or CellsTask
    run: pathlib.Path = None  # the run folder, when there is one


def is_run(path):
    path = pathlib.Path(path)
    return path.is_dir() and (path / "config.toml").is_file()


def run_config(path):
    """The resolved config of a run folder or a config TOML file."""
    path = pathlib.Path(path)
    return C.resolve(C.load(path / "config.toml" if path.is_dir() else path))


def checkpoints(run):
    """The kept checkpoints of a run folder as [(round, path)], oldest first."""
    found = []
    for p in (pathlib.Path(run) / "checkpoints").glob("ckpt-*.npz"):
        m = CKPT.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def weights_path(run, which="final"):
    """The weights file of ``run`` selected by ``which`` (see ``WHICH_HELP``)."""
    run = pathlib.Path(run)
    which = str(which)
    kept = checkpoints(run)
    if which == "final":
        if not kept:
            raise ConfigError(f"--which final: {run} has no checkpoints/ckpt-*.npz (an unfinished or foreign "
                              "folder); use --which base or a weights path")
        return kept[-1][1]
    if which == "base":
        if not (run / "base.npz").is_file():
            raise ConfigError(f"--which base: {run / 'base.npz'} does not exist")
        return run / "base.npz"
    if which.isdigit():
        for r, p in kept:
            if r == int(which):
                return p
        raise ConfigError(f"--which {which}: no checkpoint of round {which} in {run / 'checkpoints'}; kept "
                          f"rounds: {[r for r, _ in kept] or 'none'}")
    path = pathlib.Path(which)
    for cand in (path, run / path):
        if cand.is_file():
            return cand
    raise ConfigError(f"--which must be {WHICH_HELP}; {which!r} is none of these")


def config_near(weights):
    """config.toml of the run folder a weights file sits in (RUN/base.npz or RUN/checkpoints/*.npz), or None."""
    weights = pathlib.Path(weights).resolve()
    folder = weights.parent.parent if weights.parent.name == "checkpoints" else weights.parent
    return folder / "config.toml" if is_run(folder) else None


def _round_of(path):
    if path.name == "base.npz":
        return 0
    try:
        with np.load(path) as z:
            if "round" in z.files:
                return int(z["round"])
    except (OSError, ValueError):
        pass                     # load_policy reports unreadable files with the proper message
    m = CKPT.search(path.name)
    return int(m.group(1)) if m else None


def open_source(source, which="final", config=None):
    """A ``Source`` from a run folder (weights chosen by ``which``) or a bare weights file; ``config`` (a
    run config TOML) overrides the run's own config and is required for a weights file outside a run."""
    if isinstance(source, bool) or not isinstance(source, (str, os.PathLike)):
        raise ConfigError(f"RUN_DIR_or_WEIGHTS must be a path (a run folder or a weights .npz), got {source!r}")
    path = pathlib.Path(source)
    if not path.exists():
        raise ConfigError(f"RUN_DIR_or_WEIGHTS: {path} does not exist (expected a run folder or a weights .npz)")
    if config is not None and not pathlib.Path(config).is_file():
        raise ConfigError(f"--config: {config} is not a file (expected a run config .toml)")
    run = None
    if path.is_dir():
        if not is_run(path):
            raise ConfigError(f"RUN_DIR_or_WEIGHTS: {path} is a folder but not a run folder (no config.toml)")
        run = path
        weights = weights_path(path, which)
        cfg_path = config or path / "config.toml"
    else:
        if str(which) != "final":
            raise ConfigError("--which selects weights inside a run folder; pass the run folder, not a file")
        weights = path
        cfg_path = config or config_near(path)
        if cfg_path is None:
            raise ConfigError(f"{path} is a bare weights file and no run config.toml was found beside it; pass "
                              "--config CONFIG.toml (the config whose task defines the contexts and y*)")
        if config is None:
            run = pathlib.Path(cfg_path).parent
    policy = load_policy(weights)
    cfg = run_config(cfg_path)
    task = build_task(cfg)
    if policy.features != task.features:
        raise ConfigError(f"the weights {weights} are for {policy.features}, but the config {cfg_path} "
                          f"describes {task.features}")
    return Source(policy, pathlib.Path(weights), _round_of(pathlib.Path(weights)), cfg, task, run)
