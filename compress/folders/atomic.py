"""Write a model folder all at once, or not at all.

A killed build must never leave a folder that a later run mistakes for a finished one. So every folder is
written into ``<dest>.tmp-<pid>`` beside its destination, gets a ``manifest.json`` (the completion marker,
with the sha256 of every file) as its very last file, and is then renamed into place. A folder without a
readable manifest is incomplete, whatever else it holds, and is rebuilt.

    with atomic_folder(dest, info={"source": "..."}) as tmp:
        model.save_pretrained(tmp)
    # dest now exists, complete, with dest/manifest.json

A lock file beside the destination (``<dest>.lock``) makes concurrent makers of one folder (pytest-xdist
workers, two terminals) wait for each other instead of doing the work twice; use :func:`folder_lock` around
the "is it complete? else build it" step.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from compress.core.errors import CompressError

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (manifest excluded), keyed by its relative POSIX path."""
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def digest_of_hashes(hashes: dict[str, str]) -> str:
    """One sha256 over a folder's per-file hashes (names included): equal folders give equal digests."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}\0{hashes[name]}\n".encode())
    return digest.hexdigest()


def weights_sha256(hashes: dict[str, str]) -> str:
    """One hash over the ``*.safetensors`` files: equal weights give equal hashes on any machine."""
    return digest_of_hashes({name: h for name, h in hashes.items() if name.endswith(".safetensors")})


def read_manifest(folder: str | Path) -> dict | None:
    """The folder's manifest, or None when the folder is missing or incomplete (no readable manifest)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("complete") is True else None


def is_complete(folder: str | Path) -> bool:
    return read_manifest(folder) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(dest: Path) -> None:
    """Delete ``<dest>.tmp-<pid>``/``.old-<pid>`` folders whose writer process is gone (a killed run)."""
    for kind in ("tmp", "old"):
        for leftover in dest.parent.glob(f"{dest.name}.{kind}-*"):
            suffix = leftover.name.rsplit("-", 1)[-1]
            if suffix.isdigit() and not _pid_alive(int(suffix)):
                shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def folder_lock(dest: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<dest>.lock`` (waits for another process that holds it)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f"{dest.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_folder(dest: str | Path, *, info: dict | None = None) -> Iterator[Path]:
    """Yield an empty temp folder beside ``dest``; on success make it ``dest``, complete with its manifest.

    ``info`` is copied into the manifest when the block ends (so the block may still add to it). An existing
    ``dest`` (incomplete, or rebuilt on purpose) is replaced; on an exception the temp folder is deleted and
    ``dest`` is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest)
    tmp = dest.parent / f"{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        hashes = folder_hashes(tmp)
        if not hashes:
            raise CompressError(f"nothing was written for {dest}", "check the step that writes this folder")
        manifest = {
            "complete": True,
            **(info or {}),
            "weights_sha256": weights_sha256(hashes),
            "files": hashes,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _normalise_modes(tmp)
        _replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _normalise_modes(folder: Path) -> None:
    """Give every file the mode the umask allows: some writers (safetensors via mkstemp) leave 0600, which
    hides a shared cache from other users."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _replace(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``; an old ``dest`` is first moved aside, then deleted."""
    if dest.exists() or dest.is_symlink():
        old = dest.parent / f"{dest.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
