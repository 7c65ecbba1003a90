"""Errors a user can fix. The CLI prints them as one line (traceback only with --debug)."""

from __future__ import annotations


class CompressError(Exception):
    """A problem with the user's input or environment, with the fix in the message.

    ``str(err)`` is a single line: ``<what is wrong>. Fix: <what to do>``.
    """

    def __init__(self, what: str, fix: str | None = None) -> None:
        self.what = what.rstrip(". ")
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        line = f"{self.what}."
        if self.fix:
            line += f" Fix: {self.fix}"
        return " ".join(line.split())


class EmptyOutputError(CompressError):
    """The model produced no text: the failure the old scripts let through silently."""
