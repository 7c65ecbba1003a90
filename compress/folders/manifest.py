"""manifest.json: what made a variant folder, and the fingerprint that says whether it must be rebuilt.

Every built folder ends with a manifest (written last by :func:`compress.folders.atomic.atomic_folder`, so a
folder without one is unfinished). It records the base, the steps and their parameters, what each step
measured (Block Influence scores, the distillation loss curve), tool versions, and sha256 hashes of the
input folder and of every output file.

The *fingerprint* is one hash over everything that decides the output: the input folder's content, each
step's parameters, the source code of the step's builder, and the versions of the tools it uses. A
folder whose manifest carries the fingerprint a build would compute is up to date and is reused as is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from compress.folders.atomic import (
    MANIFEST,
    digest_of_hashes,
    file_sha256,
    folder_hashes,
    read_manifest,
    weights_sha256,
)

FORMAT = "exaone-compression/variant/1"
_digests: dict[tuple, str] = {}


def folder_digest(folder: str | Path) -> str:
    """Content digest of a model folder. Uses its manifest's file hashes when it has one (written with the
    folder), else hashes every file once per process (a user's own base folder)."""
    folder = Path(folder).resolve()
    manifest = read_manifest(folder)
    if manifest and isinstance(manifest.get("files"), dict):
        return digest_of_hashes(manifest["files"])
    stamp = tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    )
    key = (str(folder), stamp)
    if key not in _digests:
        _digests[key] = digest_of_hashes(folder_hashes(folder))
    return _digests[key]


def weights_digest(folder: str | Path) -> str:
    """Digest of the folder's safetensors files only: equal weights, whatever the side files."""
    folder = Path(folder).resolve()
    manifest = read_manifest(folder)
    if manifest and isinstance(manifest.get("files"), dict):
        hashes = manifest["files"]
    else:
        hashes = {p.name: file_sha256(p) for p in sorted(folder.glob("*.safetensors"))}
    return weights_sha256(hashes)


def code_version(modules: tuple[str, ...] | list[str]) -> str:
    """sha256 over the named modules' source files: editing a builder rebuilds what it made."""
    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(name)
        h.update(name.encode() + b"\0" + Path(spec.origin).read_bytes())
    return h.hexdigest()[:16]


def fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def is_up_to_date(folder: str | Path, expected: str) -> bool:
    """True when the folder is complete, carries ``expected`` as its fingerprint and has all its files."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("format") != FORMAT or manifest.get("fingerprint") != expected:
        return False
    files = manifest.get("files") or {}
    return bool(files) and all((folder / name).is_file() for name in files)
