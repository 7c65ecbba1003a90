"""Which folder a result came from: its weights hash and, from its manifest, the recipe and steps that built it.

Goldens and reports carry this (``FolderProvenance.to_dict``), so a golden recorded from other weights can say
that the folder changed and how (:func:`provenance_changes`), instead of showing only an answer diff.

The weights hash is the one the build wrote into ``manifest.json`` (:func:`compress.folders.atomic.weights_sha256`
over the safetensors files), so it costs nothing for a built folder. A folder without a manifest (built
elsewhere) is hashed here once per process, about 0.6 s per 260 MB on this repo's 2-core machines; it still
works, and :attr:`FolderProvenance.warning` says what is missing. Nothing machine-specific (paths, host, build
time) is kept: a golden recorded on one machine must read the same on another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.folders.atomic import MANIFEST, read_manifest
from compress.folders.manifest import weights_digest

SHORT = 12
"""Hex digits of a hash shown in messages (the files keep the whole hash)."""


@dataclass(frozen=True)
class FolderProvenance:
    """What identifies a model folder's weights and how they were made. Fields are None when unknown."""

    weights_sha256: str | None
    """One sha256 over the folder's ``*.safetensors`` files (names and contents)."""
    weights_bytes: int | None = None
    """Total size of the ``*.safetensors`` files: how compressed the variant is."""
    manifest: bool = False
    """False: no readable manifest.json (a folder built elsewhere); only the weights identify it."""
    fingerprint: str | None = None
    """The manifest's build fingerprint (inputs, step parameters, builder code, tool versions): it also
    changes when only the code or a tool version did, with byte-identical weights."""
    matrix: str | None = None
    variant: str | None = None
    recipe: str | None = None
    """The recipe's file name (its path is machine-specific)."""
    profile: str | None = None
    base: str | None = None
    """The base model's name and content digest, ``name@digest``."""
    lineage: list[dict] = field(default_factory=list)
    """From the base to this folder: ``[{"variant": ..., "steps": [{"step": ..., "params": {...}}]}]``."""
    same_as_base: bool = False
    """The build found its weights identical to the base's (a distill step whose teacher is the student):
    its figures are the baseline's own, not a result."""

    @property
    def warning(self) -> str | None:
        """One line for a folder without a manifest, else None."""
        if self.manifest:
            return None
        return (
            f"no {MANIFEST} (built elsewhere?): identified by its weights hash {_short(self.weights_sha256)} only; "
            "build it with python -m compress build to record its recipe and steps"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FolderProvenance:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**{"weights_sha256": None, **known})


def folder_provenance(folder: str | Path) -> FolderProvenance | None:
    """The folder's provenance, or None when it is not a folder (the run then fails for that reason)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    weights = sorted(folder.glob("*.safetensors"))
    size = sum(p.stat().st_size for p in weights) if weights else None
    digest = weights_digest(folder) if weights else None
    manifest = read_manifest(folder)
    if manifest is None:
        return FolderProvenance(weights_sha256=digest, weights_bytes=size)
    base = manifest.get("base") if isinstance(manifest.get("base"), dict) else {}
    recipe = manifest.get("recipe") if isinstance(manifest.get("recipe"), str) else None  # make-models: a dict
    return FolderProvenance(
        weights_sha256=manifest.get("weights_sha256") or digest,
        weights_bytes=size,
        manifest=True,
        fingerprint=manifest.get("fingerprint"),
        matrix=manifest.get("matrix"),
        variant=manifest.get("variant") or manifest.get("name"),
        recipe=Path(recipe).name if recipe else None,
        profile=manifest.get("profile"),
        base=f"{base.get('name')}@{_short(base.get('digest'))}" if base else None,
        lineage=_lineage(manifest),
        same_as_base=manifest.get("same_as_base") is True,
    )


def _lineage(manifest: dict) -> list[dict]:
    """The manifest's lineage (every step from the base), or its own steps where it has none."""
    chain = manifest.get("lineage")
    if not isinstance(chain, list):
        steps = manifest.get("steps") if isinstance(manifest.get("steps"), list) else []
        chain = [{"variant": manifest.get("variant") or manifest.get("name"), "steps": steps}]
    return [
        {
            "variant": link.get("variant"),
            "steps": [{"step": s.get("step"), "params": s.get("params") or {}} for s in link.get("steps") or []],
        }
        for link in chain
        if isinstance(link, dict)
    ]


def _short(digest: str | None) -> str:
    return digest[:SHORT] if digest else "unknown"


def describe(p: FolderProvenance) -> str:
    """One line: weights, manifest and how it was built (``built from base -> l29 [prune]``)."""
    parts = [f"weights {_short(p.weights_sha256)}"]
    if not p.manifest:
        return parts[0] + f" (no {MANIFEST}: built elsewhere)"
    if p.fingerprint:
        parts.append(f"manifest fingerprint {_short(p.fingerprint)}")
    if p.recipe or p.matrix:
        parts.append(f"recipe {p.recipe or '?'} (matrix {p.matrix or '?'}, profile {p.profile or '?'})")
    if any(link["steps"] for link in p.lineage):
        chain = " -> ".join(
            f"{link['variant']}" + (f" [{', '.join(s['step'] for s in link['steps'])}]" if link["steps"] else "")
            for link in p.lineage
        )
        parts.append(f"built from {p.base or '?'}: {chain}")
    elif p.variant:
        parts.append(f"{p.variant}, no build steps")
    return ", ".join(parts)


def provenance_changes(then: FolderProvenance, now: FolderProvenance) -> list[str]:
    """What differs between two folders' provenance, most telling first: the build inputs and each step's
    parameters (``compressed-l29-distilled distill: steps 10 -> 20``), then the weights."""
    changes: list[str] = []
    if then.manifest and not now.manifest:
        changes.append(f"the folder now has no {MANIFEST} (it had one: rebuilt or copied from elsewhere)")
    if now.manifest and not then.manifest:
        changes.append(f"the folder now has a {MANIFEST} (it had none when recorded)")
    if then.manifest and now.manifest:
        for name in ("recipe", "matrix", "profile", "base"):
            old, new = getattr(then, name), getattr(now, name)
            if old != new:
                changes.append(f"{name} {old} -> {new}")
        changes += _lineage_changes(then.lineage, now.lineage)
        if then.fingerprint != now.fingerprint and not changes:
            changes.append(
                f"manifest fingerprint {_short(then.fingerprint)} -> {_short(now.fingerprint)} with the same "
                "recipe and step parameters (builder code or tool versions changed)"
            )
    if then.weights_sha256 != now.weights_sha256:
        changes.append(f"weights {_short(then.weights_sha256)} -> {_short(now.weights_sha256)}")
    return changes


def _lineage_changes(then: list[dict], now: list[dict]) -> list[str]:
    def chain(lineage: list[dict]) -> list[str]:
        return [str(link.get("variant")) for link in lineage]

    if chain(then) != chain(now):
        return [f"built from {' -> '.join(chain(then)) or '?'}, now from {' -> '.join(chain(now)) or '?'}"]
    changes = []
    for old, new in zip(then, now, strict=True):
        old_steps, new_steps = old.get("steps") or [], new.get("steps") or []
        names_then, names_now = [s["step"] for s in old_steps], [s["step"] for s in new_steps]
        if names_then != names_now:
            changes.append(f"{old['variant']}: steps {names_then} -> {names_now}")
            continue
        for a, b in zip(old_steps, new_steps, strict=True):
            diff = _param_diff(a.get("params") or {}, b.get("params") or {})
            if diff:
                changes.append(f"{old['variant']} {a['step']}: {diff}")
    return changes


def _value(value: object, missing: object) -> str:
    return "(unset)" if value is missing else repr(value)


def _param_diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    missing = object()
    parts = []
    for key in keys:
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b:
            parts.append(f"{key} {_value(a, missing)} -> {_value(b, missing)}")
    return ", ".join(parts)
