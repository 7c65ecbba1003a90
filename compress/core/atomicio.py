"""Write a file whole or not at all: a temp file beside it, then ``os.replace``.

Readers see the old file or the whole new one, never half of it; on an exception the temp file is deleted and
the target is untouched. Reports, the gate's shared baseline and the builders' caches all write through here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from compress.core.errors import CompressError


def check_writable_file(path: str | Path) -> Path:
    """Fail before any work starts when the file cannot be written where the user asked."""
    file = Path(path)
    if file.is_dir():
        raise CompressError(f"report file {file} is a folder", "pass a file path such as reports/run.json")
    folder = file.parent
    if not folder.is_dir():
        raise CompressError(
            f"report folder {folder} does not exist",
            f"create it first (mkdir -p {folder}) or pass --report-file inside an existing folder",
        )
    if not os.access(folder, os.W_OK):
        raise CompressError(f"report folder {folder} is not writable", "pass --report-file in a writable folder")
    return file


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Yield a handle on a temp file beside ``path``; rename it into place when the block ends without error."""
    target = check_writable_file(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    with atomic_file(path) as handle:
        handle.write(text)
    return Path(path)
