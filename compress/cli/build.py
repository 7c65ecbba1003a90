"""`python -m compress build <matrix or recipe.toml>`: build a variant matrix (reusing what is up to date)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build the variants of a recipe (pruning, distillation, AWQ)",
        description=(
            "Build every variant of a recipe into <out>/<variant>, each a normal HF model folder with a "
            "manifest.json. Variants whose inputs, parameters and code have not changed are reused."
        ),
    )
    parser.add_argument(
        "recipe", help="a packaged matrix name (smollm2, tiny-exaone4) or a recipe .toml path"
    )
    parser.add_argument(
        "--profile",
        default=None,
        help="the recipe profile that overrides step parameters: quick (CPU) or full",
    )
    parser.add_argument(
        "--variants",
        type=lambda s: [v.strip() for v in s.split(",") if v.strip()],
        default=None,
        help="comma-separated variants to build (with the variants they start from); default: all",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: $EXAONE_COMPRESSION_HOME/models/<matrix>)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild the selected variants even if up to date"
    )
    parser.add_argument(
        "--plan", action="store_true", help="print the resolved recipe and each variant's status, then exit"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from compress.build.recipe import load_recipe

    recipe = load_recipe(args.recipe, profile=args.profile)
    print(recipe.describe())
    from compress.build.matrix import build_matrix, matrix_status, summary

    if args.plan:
        for name, state in matrix_status(recipe, out_dir=args.out).items():
            print(f"  {name:<36} {state}")
        return 0

    results = build_matrix(recipe, out_dir=args.out, variants=args.variants, force=args.force)
    print(summary(results))
    if all(r.status == "up to date" for r in results):
        print(f"all {len(results)} variants up to date")
    return 0
