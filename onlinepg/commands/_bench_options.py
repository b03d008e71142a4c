"""The options of ``onlinepg bench`` and ``python -m bench``, defined once.

Both import them from here: the installed command (``onlinepg.commands.bench``) for its parser and ``--help``,
the checkout's ``bench/__main__.py`` for its own. The leading underscore keeps ``onlinepg.cli`` from taking
this module for a command. Light: argparse only.
"""


def add_arguments(p):
    """Add the bench options to the argparse parser ``p``."""
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run: every row, not the reference "
                                                        "figures)")
    p.add_argument("--out", help="output folder for bench.json and bench.md (default runs/bench-<timestamp>)")
    p.add_argument("--sections", default="1,2,3,4,5,6", help="comma-separated section numbers (default all)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="first wait up to SECONDS for the 1-minute load average to fall below 0.5")
