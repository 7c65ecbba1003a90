"""Calibrated floors as a thresholds.toml block, and putting that block into a thresholds file.

A block sits between two comment lines, so a later calibration of the same gate replaces exactly it and
nothing else in the file::

    # --- calibrated: gate my-exaone (python -m compress calibrate, 2026-12-02) ---
    [gates.my-exaone.defaults]
    max_mean_kl = 0.00085   # ...
    [gates.my-exaone.variants.compressed-l29]
    ...
    # --- end calibrated: gate my-exaone ---

Edits made by hand inside the markers are lost at the next calibration; tune a floor outside them in
``[variants.<v>]`` or keep a copy. A file that already holds hand-written tables for the gate is refused
(merging would mean guessing which comments belong to which table). The new text is validated as a
thresholds file, and checked to resolve to the calibrated values, before the caller writes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from compress.core.errors import CompressError
from compress.gate.calibrate import Floor, VariantCalibration
from compress.gate.thresholds import FIELDS, Thresholds, parse_thresholds

_BEGIN = "# --- calibrated: gate {gate} ("
_END = "# --- end calibrated: gate {gate} ---"
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(name: str) -> str:
    """A table-name part: bare where TOML allows it, else a quoted string (variant names may hold dots)."""
    return name if _BARE.fullmatch(name) else json.dumps(name)


def _value(x: float) -> str:
    return repr(float(x))


def _comment(f: Floor) -> str:
    """``measured 0.000777 +- 3e-05 (clustered SE over 26 prompts); margin 6e-05: 2 SE``"""
    m = f.measured
    what = f"{m.label}: " if m.label else ""
    runs = f" (mean of {len(m.values)} runs)" if len(m.values) > 1 else ""
    spread = f" +- {m.spread:.2g} ({m.spread_label})" if m.k else ""
    return f"{what}measured {m.value:.4g}{runs}{spread}; margin {f.margin:.2g}: {f.source}"


def render_block(
    gate: str, calibrations: Sequence[VariantCalibration], defaults: dict[str, Floor], header: Sequence[str]
) -> str:
    """The block's text: a header of provenance comments, the gate's defaults, one table per variant; every
    floor with what was measured and where its margin came from, every key not calibrated with the reason."""
    g = toml_key(gate)
    lines = [_BEGIN.format(gate=gate) + f"{header[0]}) ---", *(f"# {h}" for h in header[1:])]
    lines += ["", f"[gates.{g}.defaults]  # the loosest floor of the variants below: a variant added later gets it"]
    lines += [f"{key} = {_value(f.floor)}  # {f.variant}" for key, f in defaults.items()]
    for c in calibrations:
        lines += ["", f"[gates.{g}.variants.{toml_key(c.variant)}]"]
        for key in FIELDS:
            if key in c.floors:
                lines.append(f"{key} = {_value(c.floors[key].floor)}  # {_comment(c.floors[key])}")
            elif key in c.notes:
                lines.append(f"# {key}: {c.notes[key]}")
    lines.append(_END.format(gate=gate))
    return "\n".join(lines) + "\n"


def sanity_text(thresholds: Thresholds) -> str:
    """The tables of ``thresholds`` that hold in every gate, as TOML: with a calibrated block after them, what
    the gate resolves once the block is the gate's only tables (calibration checks its runs against that)."""
    shared = thresholds.shared_tables()
    lines = ["[defaults]", *(f"{k} = {_value(v)}" for k, v in shared["defaults"].items())]
    for variant, values in shared["variants"].items():
        lines += [f"[variants.{toml_key(variant)}]", *(f"{k} = {_value(v)}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


def insert_block(text: str, gate: str, block: str, file: Path) -> str:
    """``text`` (a thresholds file) with the gate's calibrated block replaced by ``block``, or ``block``
    appended when it has none. Refuses a file with hand-written tables for the gate, and a broken marker."""
    lines = text.splitlines(keepends=True)
    begin = [i for i, line in enumerate(lines) if line.startswith(_BEGIN.format(gate=gate))]
    end = [i for i, line in enumerate(lines) if line.rstrip("\n") == _END.format(gate=gate)]
    if len(begin) > 1 or len(end) > 1 or len(begin) != len(end) or (begin and end[0] < begin[0]):
        raise CompressError(
            f"{file} has an unmatched or repeated calibrated-block marker for gate {gate} "
            f"(start lines {[i + 1 for i in begin]}, end lines {[i + 1 for i in end]})",
            f"keep one '{_BEGIN.format(gate=gate)}...' line and one '{_END.format(gate=gate)}' line, or delete the "
            "block, then calibrate again",
        )
    if begin:
        return "".join(lines[: begin[0]]) + block + "".join(lines[end[0] + 1 :])
    if text.strip() and parse_thresholds(text, file).has_gate(gate):
        raise CompressError(
            f"{file} already has hand-written tables for gate {gate} ([gates.{gate}...])",
            "delete them (git keeps them) or calibrate under another --gate-name, or pass --out FILE instead of "
            "--write and merge the block by hand",
        )
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + block


def checked(text: str, file: Path, gate: str, calibrations: Sequence[VariantCalibration]) -> Thresholds:
    """Parse the new file text and make sure every calibrated floor is what the gate will resolve."""
    thresholds = parse_thresholds(text, file)
    for c in calibrations:
        resolved = thresholds.for_variant(gate, c.variant).floors
        wrong = [k for k, f in c.floors.items() if getattr(resolved, k) != f.floor]
        if wrong:
            raise CompressError(
                f"after inserting the block, {file} resolves {c.variant}'s {', '.join(wrong)} to other values",
                "report this as a bug of python -m compress calibrate",
            )
    return thresholds
