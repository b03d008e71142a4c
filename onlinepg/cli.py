"""The ``onlinepg`` command."""
import argparse
import sys

from .errors import ConfigError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="onlinepg", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the default experiment")
    run.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command in (None, "run"):
            from .demo import demo
            demo(seed=getattr(args, "seed", 0))
            return 0
    except ConfigError as exc:
        print(f"onlinepg: error: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 1


if __name__ == "__main__":
    sys.exit(main())
