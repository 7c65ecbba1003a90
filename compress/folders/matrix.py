"""A variant matrix on disk: one folder per variant beside each other, the baseline among them.

``python -m compress build`` writes ``models/<matrix>/<variant>``; eval-compare and the gate read such a
folder. Which subfolders count as variants, and the baseline's default name, are decided here once.
"""

from __future__ import annotations

from pathlib import Path

BASELINE = "base"
"""The variant every other one is compared with, unless the user names another."""


def is_leftover(folder: Path) -> bool:
    """A builder's temp or backup folder (written beside the target, renamed at the end), not a variant."""
    name = folder.name
    return name.startswith(".") or ".tmp-" in name or ".old-" in name


def list_variants(models_dir: Path, baseline: str = BASELINE, *, built_only: bool = False) -> list[str]:
    """Every variant folder except the baseline, sorted. ``built_only`` keeps only folders with a config.json;
    without it a folder that lacks one is kept, so a broken variant fails the gate instead of vanishing."""
    return sorted(
        p.name
        for p in Path(models_dir).iterdir()
        if p.is_dir()
        and not is_leftover(p)
        and p.name != baseline
        and (not built_only or (p / "config.json").is_file())
    )
