"""`python -m compress <command>`: one subcommand per stage, each in its own module.

Every command module has ``add_parser(subparsers)`` and ``run(args) -> int``. Errors the user can fix
(:class:`CompressError`) print as one line with the fix and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from compress.core.errors import CompressError, EmptyOutputError

COMMANDS = {
    "make-models": "compress.cli.make_models",
    "init": "compress.cli.init_recipe",
    "build": "compress.cli.build",
    "convert": "compress.cli.convert",
    "verify": "compress.cli.verify",
    "eval-compare": "compress.cli.eval_compare",
    "bench": "compress.cli.bench",
    "calibrate": "compress.cli.calibrate",
    "report": "compress.cli.report",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compress",
        description="Build compressed EXAONE variants and check them before release.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    try:
        return int(args.run(args) or 0)
    except EmptyOutputError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except CompressError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
