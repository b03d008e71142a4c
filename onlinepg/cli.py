"""onlinepg — simulate post-training of linear autoregressive policies with policy gradients."""
import argparse
import json
import sys
import time

from .errors import ConfigError


def _run(args):
    from . import config as C
    from .engine import run

    config = args.config if args.config else (None if args.resume else C.DEFAULT_EXPERIMENT)
    out = args.out
    if out is None:
        if args.resume:
            raise ConfigError("--resume needs --out DIR (the run to continue)")
        name = "default" if not args.config else args.config.rsplit("/", 1)[-1].removesuffix(".toml")
        out = f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = run(config, out, overwrite=args.overwrite, resume=args.resume, sets=args.set,
                  progress=False if args.no_progress else None)
    keys = ("rounds", "updates", "orm_queries", "prm_queries", "tokens_sampled", "mistakes_sampled",
            "mistakes_expected", "final_test_error", "final_test_error_avg", "wall_seconds", "compile_seconds",
            "rounds_per_second")
    print(f"run folder: {out}")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="onlinepg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment (the default one when no CONFIG is given)")
    run.add_argument("config", nargs="?", help="a TOML config (see data/configs/); omit for the default")
    run.add_argument("--out", help="output folder (default: runs/<name>-<timestamp>)")
    run.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config key")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except ConfigError as exc:
        print(f"onlinepg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
