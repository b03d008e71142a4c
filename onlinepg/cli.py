"""onlinepg — simulate post-training of linear autoregressive policies with policy gradients."""
import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import ConfigError


def _commands():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield info.name, importlib.import_module(f"{commands.__name__}.{info.name}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="onlinepg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers = {}
    for name, module in _commands():
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(p)
        handlers[name] = module.main
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"onlinepg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
