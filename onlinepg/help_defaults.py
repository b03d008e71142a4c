"""Defaults that ``--help`` shows, defined here rather than in ``lq.py`` / ``runfolder.py``.

Those modules import NumPy and the Numba kernels; the command-line parsers read these values to print their help,
and ``onlinepg --help`` must stay free of heavy imports. This module imports nothing.
"""
DEFAULT_CONTEXTS = 16384
DEFAULT_EPS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
WHICH_HELP = "'final' (the last checkpoint), 'base' (base.npz), a round with a kept checkpoint, or a .npz path"
