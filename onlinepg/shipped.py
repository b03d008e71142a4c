"""The files shipped inside the package: the repository's ``data/`` folder, installed as ``onlinepg.data``.

Experiment specs, the default and example configs and the example sweep. Read them through here, never through a
path relative to the source tree: an installed wheel has no repository around it, and ``importlib.resources``
finds the files in a wheel and an editable install alike.
"""
from importlib import resources

from .errors import ConfigError

PACKAGE = "onlinepg.data"


def data_file(*parts):
    """The shipped file ``data/<parts...>`` as an ``importlib.resources`` Traversable (``.read_text()``,
    ``.is_file()``); e.g. ``data_file("configs", "experiments", "fig1.toml")``."""
    node = resources.files(PACKAGE)
    for part in parts:
        node = node / part
    return node


def read_data(*parts):
    """The text of the shipped file ``data/<parts...>``; ConfigError naming it if it is not there."""
    node = data_file(*parts)
    if not node.is_file():
        raise ConfigError(f"{'/'.join(parts)} is not among the files shipped with onlinepg (package {PACKAGE}); "
                          "the installation is incomplete: reinstall onlinepg")
    return node.read_text(encoding="utf-8")


def example_configs():
    """Names of the shipped example run configs (``data/configs/<name>.toml``), sorted."""
    return sorted(n.name[:-5] for n in data_file("configs").iterdir() if n.name.endswith(".toml"))
