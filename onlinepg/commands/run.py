"""onlinepg run — play one experiment through the streaming engine."""
import json
import time

from ..errors import ConfigError

HELP = "run an experiment (the default one when no CONFIG is given)"
SUMMARY_KEYS = ("rounds", "updates", "orm_queries", "prm_queries", "tokens_sampled", "mistakes_sampled",
                "mistakes_expected", "final_test_error", "final_test_error_avg", "wall_seconds", "compile_seconds",
                "rounds_per_second")


def add_arguments(p):
    p.add_argument("config", nargs="?", help="a TOML config (see data/configs/); omit for the default")
    p.add_argument("--out", help="output folder (default: runs/<name>-<timestamp>)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config key")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args):
    from .. import config as C
    from ..engine import run

    config = args.config if args.config else (None if args.resume else C.DEFAULT_EXPERIMENT)
    out = args.out
    if out is None:
        if args.resume:
            raise ConfigError("--resume needs --out DIR (the run to continue)")
        name = "default" if not args.config else args.config.rsplit("/", 1)[-1].removesuffix(".toml")
        out = f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = run(config, out, overwrite=args.overwrite, resume=args.resume, sets=args.set,
                  progress=False if args.no_progress else None)
    print(f"run folder: {out}")
    print(json.dumps({k: summary[k] for k in SUMMARY_KEYS}, indent=2))
    return 0
