"""Per-variant release thresholds from a checked-in TOML file, validated at load (unknown keys fail at once).

Resolution, later wins: the built-in defaults below, the file's ``[defaults]``, ``[variants.<variant>]`` (a
variant in every gate: what 4-bit weights cost holds for any model), ``[gates.<gate>.defaults]``, then
``[gates.<gate>.variants.<variant>]``. ``<gate>`` is the gate's name (by default the models folder's name, e.g.
``tiny-exaone4``), so one file serves several variant matrices::

    [defaults]
    non_empty_rate = 1.0

    [variants.base-llmc-awq]
    speedup = 0.78

    [gates.smollm2.variants.compressed-l29]
    avg_similarity = 0.40   # measured 0.46 on 2026-11-28
    speedup = 0.90

Every resolved value remembers the table it came from, so a failure can say where to change it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from compress.core.errors import CompressError


class Floors(BaseModel):
    """The gate's limits for one variant. Fractions are 0-1; ``speedup`` is a ratio (1.0 = as fast)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    min_similarity: float = Field(0.0, ge=0.0, le=1.0)
    """Each prompt's answer: rapidfuzz similarity to the baseline's answer, at least this (0: report only)."""
    avg_similarity: float = Field(0.0, ge=0.0, le=1.0)
    """Mean similarity over all prompts, at least this."""
    exact_match: float = Field(0.0, ge=0.0, le=1.0)
    """Fraction of prompts answered exactly as the baseline did, at least this."""
    non_empty_rate: float = Field(1.0, ge=0.0, le=1.0)
    """Fraction of prompts with a visible answer, at least this."""
    speedup: float = Field(0.8, gt=0.0)
    """Token-normalised generation speedup over the baseline (GPU runs only), at least this."""
    max_mean_kl: float = Field(0.35, gt=0.0)
    """Mean teacher-forced KL(base || variant) in nats per answer token, over the gate's and the fidelity
    prompts, at most this."""
    max_p99_kl: float = Field(3.0, gt=0.0)
    """99th percentile of the per-token KL, at most this: a few tokens the variant gets badly wrong."""
    min_top1_agreement: float = Field(0.75, ge=0.0, le=1.0)
    """Fraction of answer tokens where the variant's greedy choice equals the baseline's, at least this."""
    min_task_recovery: float = Field(0.75, ge=0.0)
    """Task accuracy of the variant / the baseline's (multiple choice and short answer each), at least this.
    The quality built-ins equal tests/gate/thresholds.toml's [defaults], where the reasoning is written."""


_Overrides = create_model(
    "_Overrides",
    __config__=ConfigDict(extra="forbid", frozen=True),
    **{
        name: (info.annotation | None, FieldInfo.merge_field_infos(info, default=None))
        for name, info in Floors.model_fields.items()
    },
)
"""Every Floors field, optional: what one table of the file may set (the fields are declared once, above)."""


class _GateSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: _Overrides = _Overrides()
    variants: dict[str, _Overrides] = {}


class _ThresholdsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: _Overrides = _Overrides()
    variants: dict[str, _Overrides] = {}
    gates: dict[str, _GateSection] = {}


FIELDS = tuple(Floors.model_fields)


@dataclass(frozen=True)
class VariantThresholds:
    """Resolved floors for one variant, with the table each value came from (for failure messages)."""

    floors: Floors
    sources: dict[str, str]

    def source(self, field: str) -> str:
        return self.sources[field]


@dataclass(frozen=True)
class Thresholds:
    """A parsed thresholds file."""

    path: Path
    _data: _ThresholdsFile

    def shared_tables(self) -> dict[str, dict]:
        """The tables that hold in every gate, as set in the file: ``{"defaults": {...}, "variants": {v: {...}}}``."""
        return {
            "defaults": self._data.defaults.model_dump(exclude_none=True),
            "variants": {v: o.model_dump(exclude_none=True) for v, o in self._data.variants.items()},
        }

    def has_gate(self, gate: str) -> bool:
        """Whether the file has tables of its own for this gate (``[gates.<gate>...]``)."""
        return gate in self._data.gates

    def for_variant(self, gate: str, variant: str, *, gate_tables: bool = True) -> VariantThresholds:
        """The variant's floors in that gate; ``gate_tables=False``: only the tables that hold in every gate
        (built-ins, ``[defaults]``, ``[variants.<variant>]``), the sanity floors calibration never loosens."""
        values: dict[str, float] = {}
        sources = {name: "built-in default" for name in FIELDS}
        section = self._data.gates.get(gate, _GateSection())
        layers = [
            (self._data.defaults, "[defaults]"),
            (self._data.variants.get(variant, _Overrides()), f"[variants.{variant}]"),
        ]
        if gate_tables:
            layers += [
                (section.defaults, f"[gates.{gate}.defaults]"),
                (section.variants.get(variant, _Overrides()), f"[gates.{gate}.variants.{variant}]"),
            ]
        for overrides, table in layers:
            for name, value in overrides.model_dump(exclude_none=True).items():
                values[name] = value
                sources[name] = f"{self.path.name} {table}"
        return VariantThresholds(floors=Floors(**values), sources=sources)


def load_thresholds(path: str | Path) -> Thresholds:
    """Parse and validate; every problem in the file is reported in one message."""
    file = Path(path)
    if not file.is_file():
        raise CompressError(
            f"thresholds file {file} does not exist",
            "pass an existing file to --gate-thresholds (the default is tests/gate/thresholds.toml)",
        )
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CompressError(f"thresholds file {file} is not valid TOML ({exc})", "fix the syntax") from None
    return parse_thresholds(text, file)


def parse_thresholds(text: str, file: Path) -> Thresholds:
    """:func:`load_thresholds` on text already read (``file`` names it in messages)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CompressError(f"thresholds file {file} is not valid TOML ({exc})", "fix the syntax") from None
    try:
        data = _ThresholdsFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise CompressError(
            f"thresholds file {file} is invalid: {problems}",
            f"use tables [defaults], [variants.<variant>], [gates.<gate>.defaults], [gates.<gate>.variants.<variant>] "
            f"with keys {', '.join(FIELDS)}",
        ) from None
    return Thresholds(path=file, _data=data)
