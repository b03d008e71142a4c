"""onlinepg run — play one experiment through the streaming engine.

Without CONFIG it plays the default experiment (data/configs/default.toml: pg_batch on the bigram teacher). Its
[algo] section belongs to pg_batch: `--set algo.name=NAME` for another algorithm starts that algorithm from the
schema defaults (add `--set algo.KEY=VALUE` for anything else) and keeps the default task, base and run.

--out DIR must be missing or empty; --overwrite replaces DIR only if it is a run folder, and only once the new
run has been validated and has started; --resume continues DIR from its last checkpoint (not with
--overwrite). One process writes a run folder at a time. Exit status: 0 done, 2 bad input (one line naming
the field), 1 the run could not go on (e.g. disk full), 130 interrupted (resume with --resume).
"""
import json
import time

from ..errors import ConfigError, Interrupted
from ..shipped import example_configs

HELP = "run an experiment (the default one when no CONFIG is given)"
SUMMARY_KEYS = ("rounds", "updates", "orm_queries", "prm_queries", "tokens_sampled", "mistakes_sampled",
                "mistakes_expected", "final_test_error", "final_test_error_avg", "wall_seconds", "compile_seconds",
                "rounds_per_second")


def add_arguments(p):
    p.add_argument("config", nargs="?", help="a TOML config file, or the name of a shipped example config "
                                             f"({', '.join(example_configs())}); omit for the default")
    p.add_argument("--out", help="output folder (default: runs/<name>-<timestamp>)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config key")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it holds a run (never another "
                                                            "folder), once the new run has started")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(name):
    """A path stays a path; a bare name that is no file is a shipped example config (its TOML, as a dict)."""
    from pathlib import Path
    if not name or Path(name).exists() or "/" in name or name.endswith(".toml"):
        return name or None
    from .. import config as C
    from ..shipped import example_configs, read_data
    if name not in example_configs():
        raise ConfigError(f"CONFIG: {name!r} is neither a file nor a shipped example config; examples: "
                          f"{', '.join(example_configs())}")
    return C.tomllib.loads(read_data("configs", f"{name}.toml"))


def main(args):
    from ..engine import run

    config = _config(args.config)       # None: the default experiment (or, with --resume, the saved config)
    out = args.out
    if out is None:
        if args.resume:
            raise ConfigError("--resume needs --out DIR (the run to continue)")
        name = "default" if not args.config else args.config.rsplit("/", 1)[-1].removesuffix(".toml")
        out = f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        summary = run(config, out, overwrite=args.overwrite, resume=args.resume, sets=args.set,
                      progress=False if args.no_progress else None)
    except Interrupted:
        raise
    except KeyboardInterrupt:           # before the first round: say whether anything is there to resume
        from pathlib import Path
        if (Path(out) / "config.toml").is_file():
            raise Interrupted(f"interrupted before the first round; continue with: onlinepg run --resume --out "
                              f"{out}") from None
        raise Interrupted("interrupted before the run started; nothing was written") from None
    print(f"run folder: {out}")
    print(json.dumps({k: summary[k] for k in SUMMARY_KEYS}, indent=2))
    return 0
