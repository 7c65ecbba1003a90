"""`python -m compress init --base DIR --name NAME --out RECIPE.toml`: a commented recipe for your own checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init",
        help="write a commented eight-variant recipe for a checkpoint folder (EXAONE 4, EXAONE 3.x, Llama-like)",
        description=(
            "Read DIR/config.json and write a recipe for the usual eight variants (prune, distill, AWQ and their "
            "combinations) with keep = layers - 1 and an AWQ group size that divides the layer widths. "
            "Then: python -m compress build RECIPE.toml [--profile quick]."
        ),
    )
    parser.add_argument("--base", required=True, help="the checkpoint folder (a Hugging Face model folder)")
    parser.add_argument(
        "--name",
        default=None,
        help="the matrix name: its folders go to $EXAONE_COMPRESSION_HOME/models/NAME, and the gate's "
        "thresholds and goldens use it (default: the base folder's name, lowercased)",
    )
    parser.add_argument("--out", type=Path, default=None, help="the recipe file to write (default: NAME.toml)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing recipe file")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the folder's Python modeling code (EXAONE 3.x needs it; the recipe then says so); off by default",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from compress.build.init_recipe import init_recipe

    name = args.name or Path(args.base).expanduser().resolve().name.lower()
    out = args.out or Path(f"{name}.toml")
    result = init_recipe(args.base, name, out, force=args.force, trust_remote_code=args.trust_remote_code)
    print(result.summary())
    return 0
