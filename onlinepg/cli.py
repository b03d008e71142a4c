"""onlinepg — simulate post-training of linear autoregressive policies with policy gradients."""
import argparse
import errno
import importlib
import os
import pkgutil
import sys

from . import commands
from .errors import ConfigError, RunError


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
    except RunError as exc:             # e.g. a full disk: not bad input, but one line saying how to go on
        print(f"onlinepg: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:             # `onlinepg ... | head`: the reader left; stop quietly, as cat would
        _silence_stdout()
        return 141
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"onlinepg: error: no space left on the device ({exc.filename or 'writing the output'}); free some "
              "space and run the command again", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:    # Ctrl-C: commands that can resume say how (errors.Interrupted)
        print(f"onlinepg: error: {exc or 'interrupted'}", file=sys.stderr)
        return 130


def _silence_stdout():
    """Point stdout at /dev/null so the interpreter's final flush does not raise a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
