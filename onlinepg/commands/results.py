"""onlinepg results — README's results table from the committed experiment results (data/results/<name>/).

Prints the table; with --readme FILE rewrites the block between <!-- results-table:start/end --> in FILE; with
--check exits 1 when FILE's block is not the table the results give. Run it from the repository root.
"""
import pathlib
import sys

HELP = "README's results table from the committed results of the experiments (data/results/)"


def add_arguments(p):
    p.add_argument("--results", default="data/results", metavar="DIR",
                   help="folder holding <name>/verdict.json per experiment (default data/results)")
    p.add_argument("--readme", metavar="FILE", help="rewrite the table block in FILE (e.g. README.md)")
    p.add_argument("--check", action="store_true", help="with --readme: only compare; exit 1 if out of date")


def main(args):
    from ..errors import ConfigError
    from ..experiments import results as R
    if not pathlib.Path(args.results).is_dir():
        raise ConfigError(f"--results: {args.results} is not a folder (expected data/results of the repository)")
    table = R.render(args.results)
    if not args.readme:
        print(table)
        return 0
    path = pathlib.Path(args.readme)
    if not path.is_file():
        raise ConfigError(f"--readme: {path} is not a file")
    text = path.read_text(encoding="utf-8")
    try:
        new = R.replace_block(text, table)
    except ValueError as exc:
        raise ConfigError(f"--readme: {path}: {exc}") from None
    if args.check:
        if new != text:
            print(f"{path}: the results table is out of date; run: onlinepg results --readme {path}", file=sys.stderr)
            return 1
        return 0
    if new != text:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(path)
    print(f"wrote the results table into {path}")
    return 0
