"""The project's prompts: one file for the gate, a disjoint one for distillation and calibration."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from compress.core.errors import CompressError

GATE_PROMPTS = "prompts.toml"
TRAINING_PROMPTS = "distill_prompts.toml"
FIDELITY_PROMPTS = "fidelity_prompts.toml"
"""Teacher-forced fidelity: the baseline's answers to these are scored under every variant."""
HELDOUT_PROMPTS = "heldout_prompts.toml"
"""Kept out of every tuning decision: only to confirm that verdicts separate on prompts nobody tuned on."""


@dataclass(frozen=True)
class Prompt:
    """One chat prompt. ``id`` names test cases and golden files, so it stays stable."""

    id: str
    text: str
    lang: str = "en"


def _packaged(name: str) -> Path:
    return Path(str(resources.files("compress") / "data" / name))


def load_prompts(path: str | Path | None = None) -> list[Prompt]:
    """Load prompts from a TOML (``[[prompt]]`` tables), JSON list, or plain text file (one per line).

    With no path, the gate's fixed prompts shipped in the package.
    """
    file = Path(path) if path is not None else _packaged(GATE_PROMPTS)
    if not file.is_file():
        raise CompressError(f"prompts file {file} does not exist", "pass an existing file to --prompts-file")
    try:
        prompts = _parse(file, file.read_text(encoding="utf-8"))
    except (
        tomllib.TOMLDecodeError,
        json.JSONDecodeError,
        UnicodeDecodeError,
        TypeError,
        KeyError,
        AttributeError,
    ) as exc:
        raise CompressError(
            f"prompts file {file} is malformed ({type(exc).__name__}: {exc})",
            "use [[prompt]] tables with id and text (TOML), a JSON list of strings or "
            "{id, text} objects, or one prompt per line (.txt)",
        ) from None
    check_entries(file, [p.id for p in prompts], kind="prompt")
    return prompts


def check_entries(file: Path, ids: list[str], *, kind: str) -> None:
    """A data file holds at least one entry and no id twice (ids name test cases and report rows)."""
    if not ids:
        raise CompressError(f"{kind}s file {file} holds no {kind}s", f"add at least one non-empty {kind}")
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise CompressError(f"{kind}s file {file} repeats ids {dup[:5]}", f"give every {kind} a unique id")


def default_fidelity_prompts_file() -> Path:
    return _packaged(FIDELITY_PROMPTS)


def heldout_prompts_file() -> Path:
    return _packaged(HELDOUT_PROMPTS)


def load_training_prompts() -> list[Prompt]:
    """Prompts for distillation and AWQ calibration: never the gate's own prompts."""
    return load_prompts(_packaged(TRAINING_PROMPTS))


def _parse(file: Path, raw: str) -> list[Prompt]:
    if file.suffix == ".toml":
        entries = tomllib.loads(raw).get("prompt", [])
        if not isinstance(entries, list):
            raise TypeError(f"'prompt' is a {type(entries).__name__}, not an array of [[prompt]] tables")
        return [_entry(e, i) for i, e in enumerate(entries)]
    if file.suffix == ".json":
        entries = json.loads(raw)
        if not isinstance(entries, list):
            raise TypeError("expected a JSON list")
        return [_entry(e, i) for i, e in enumerate(entries)]
    lines = [line.strip() for line in raw.splitlines()]
    return [Prompt(id=f"p{i:02d}", text=t) for i, t in enumerate(x for x in lines if x)]


def _entry(entry: object, index: int) -> Prompt:
    if isinstance(entry, str):
        text, pid, lang = entry, f"p{index:02d}", "en"
    elif isinstance(entry, dict):
        if "text" not in entry:
            raise KeyError(f"prompt {index} has no 'text'")
        text, pid, lang = entry["text"], entry.get("id", f"p{index:02d}"), str(entry.get("lang", "en"))
        if isinstance(pid, bool) or not isinstance(pid, str | int) or not str(pid).strip():
            raise TypeError(f"prompt {index} has id {pid!r}; ids are non-empty strings or integers")
        pid = str(pid)
    else:
        raise TypeError(f"prompt {index} is a {type(entry).__name__}, not a string or table")
    if not isinstance(text, str) or not text.strip():
        raise TypeError(f"prompt {index} has empty text")
    return Prompt(id=pid, text=text, lang=lang)
