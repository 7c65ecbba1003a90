"""`python -m compress convert SRC OUT --to llama|exaone3`: EXAONE 3.x <-> Llama layout, exact (tensor renames).

The builders and engines take EXAONE 3.x folders as they are (loaded as the Llama network they are, written
back in their own layout). This command is for a folder another tool should load as Llama (HF without remote
code, llm-compressor, TensorRT-LLM, ...), and for turning such a folder back into the EXAONE 3 layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an EXAONE 3.x folder to the Llama layout, or back (exact: tensors renamed only)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", type=Path, help="the model folder to convert")
    parser.add_argument("out", type=Path, help="the folder to write (written whole or not at all)")
    parser.add_argument("--to", choices=("llama", "exaone3"), required=True, help="the layout to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from compress.core.errors import CompressError
    from compress.folders.atomic import atomic_folder
    from compress.folders.checks import check_model_folder
    from compress.folders.exaone3 import convert_folder

    check_model_folder(args.src)
    if args.out.resolve() == args.src.resolve():
        raise CompressError(f"convert would overwrite its input {args.src}", "give another output folder")
    info: dict = {"converted_from": str(args.src)}
    with atomic_folder(args.out, info=info) as tmp:
        info["conversion"] = convert_folder(args.src, tmp, to=args.to)
    print(f"{args.src} -> {args.out} ({args.to}): {info['conversion']['tensors']} tensors renamed")
    return 0
