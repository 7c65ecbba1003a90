"""Turns on a GPU that several pytest-xdist workers share: engine work together, speed rounds alone.

Workers on one GPU start engines, generate answers and score quality at the same time (that is the point:
four engine starts at once took 82 s on the H200, one took ~77 s). Timed rounds must not overlap any of it,
or the ratio measures the neighbours. So every piece of engine work holds a *shared* turn and speed rounds an
*exclusive* one, a readers-writer lock made of two ``flock`` files in the session's shared folder:

* ``gpu.lock``: shared by engine work, exclusive for timing;
* ``gpu.turnstile``: taken (exclusively, briefly) before a shared turn, and held by a timer while it waits,
  so that a stream of engine starts cannot keep a timer waiting for ever (the classic turnstile).

Resident engines of other workers stay loaded but idle while a worker times: vLLM's engine runs nothing
between requests. A process holds at most one turn at a time; :meth:`GpuTurns.exclusive` called inside a
shared turn gives that turn up first and takes it back after (two workers upgrading at once would deadlock).
``flock`` locks die with their process, so a crashed worker never leaves the GPU locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class GpuTurns:
    """The shared/exclusive turns of one GPU, for the processes that use the same ``folder``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.lock_path = folder / "gpu.lock"
        self.turnstile_path = folder / "gpu.turnstile"
        self._fd: int | None = None
        self._depth = 0
        """Nesting of shared turns in this process (the lock is taken once)."""

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Engine work (start, answers, quality, close): any number of workers at once, never while one times."""
        if self._depth == 0:
            self._take_shared()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._release()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Timed rounds: no other worker's engine work runs meanwhile (a shared turn of this process is given
        up for the while and taken back after)."""
        depth, self._depth = self._depth, 0
        if depth:
            self._release()
        try:
            with contextlib.ExitStack() as waiting:
                waiting.enter_context(self._locked(self.turnstile_path, fcntl.LOCK_EX))  # new starts queue behind
                with self._locked(self.lock_path, fcntl.LOCK_EX):
                    waiting.close()  # the GPU is ours: starts may queue on the lock itself again
                    yield
        finally:
            if depth:
                self._take_shared()
                self._depth = depth

    def _take_shared(self) -> None:
        with self._locked(self.turnstile_path, fcntl.LOCK_EX):
            pass  # a waiting timer holds the turnstile: no new shared turn starts before it has timed
        self._fd = _open(self.lock_path)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def _release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @staticmethod
    @contextlib.contextmanager
    def _locked(path: Path, mode: int) -> Iterator[None]:
        fd = _open(path)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class NoTurns:
    """The GPU (or CPU) is this process's alone: turns cost nothing."""

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        yield


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
