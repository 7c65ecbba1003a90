"""The compression steps a recipe can name, one module each, listed in one explicit registry.

A step turns one model folder into another: ``run(src, out, params, ctx) -> result``. Its parameters are a
pydantic model (``extra="forbid"``, so a misspelled recipe key fails when the recipe loads, not an hour
into a build) and its name segment says what it did, so variant names come from their steps::

    base --prune(keep=29)--> compressed-l29 --distill--> compressed-l29-distilled --awq--> ...-llmc-awq

Heavy libraries (torch, transformers, llm-compressor) are imported inside ``run``, so parsing a recipe
stays fast. Adding a step: write ``builders/<name>.py`` with a ``Params`` model, ``name_for`` and ``run``,
then add one line to :data:`BUILDERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from compress.builders import awq, distill, prune
from compress.builders.common import BuildContext, StepParams

__all__ = ["BUILDERS", "BuildContext", "Builder", "StepParams"]


@dataclass(frozen=True)
class Builder:
    """One step kind: its parameters, how it names its output, and the function that does the work."""

    name: str
    params: type[BaseModel]
    name_for: Callable[[str, Any], str]
    """``name_for(parent_name, params)``: the variant name after this step."""
    run: Callable[[Path, Path, Any, BuildContext], dict]
    """``run(src, out, params, ctx)`` writes a complete model folder into ``out`` (an empty temp folder)
    and returns what the manifest should record about this step (scores, loss curve, ...)."""
    modules: tuple[str, ...]
    """Source files whose content is this step's code version (a change rebuilds what it made); the EXAONE 3
    layout conversion is one of them, since every step loads and saves through it."""
    tools: tuple[str, ...] = ("torch", "transformers", "safetensors")
    """Packages whose versions are part of the fingerprint: a new version may change the output."""


BUILDERS: dict[str, Builder] = {
    "prune": Builder(
        name="prune",
        params=prune.PruneParams,
        name_for=prune.name_for,
        run=prune.run,
        modules=(
            "compress.builders.prune",
            "compress.builders.importance",
            "compress.builders.common",
            "compress.folders.exaone3",
        ),
    ),
    "distill": Builder(
        name="distill",
        params=distill.DistillParams,
        name_for=distill.name_for,
        run=distill.run,
        modules=(
            "compress.builders.distill",
            "compress.builders.teacher",
            "compress.builders.common",
            "compress.folders.exaone3",
        ),
    ),
    "awq": Builder(
        name="awq",
        params=awq.AwqParams,
        name_for=awq.name_for,
        run=awq.run,
        modules=(
            "compress.builders.awq",
            "compress.builders.cpu_workaround",
            "compress.builders.common",
            "compress.folders.exaone3",
        ),
        tools=("torch", "transformers", "llmcompressor", "compressed-tensors"),
    ),
}
