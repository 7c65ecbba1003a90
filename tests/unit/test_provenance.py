"""Folder provenance: the weights hash and build record a golden or report carries, and what a change says."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from compress.folders.atomic import atomic_folder
from compress.folders.provenance import FolderProvenance, describe, folder_provenance, provenance_changes

PRUNE = {"step": "prune", "params": {"keep": 29, "drop": None}}
DISTILL = {"step": "distill", "params": {"steps": 10, "lr": 0.0001}}
LINEAGE = [
    {"variant": "compressed-l29", "steps": [PRUNE]},
    {"variant": "compressed-l29-distilled", "steps": [DISTILL]},
]


def _built(dest: Path, weights: bytes = b"weights-1", **info: object) -> Path:
    manifest = {
        "format": "exaone-compression/variant/1",
        "fingerprint": "f" * 64,
        "matrix": "tiny",
        "variant": dest.name,
        "recipe": "/somewhere/on/this/machine/tiny.toml",
        "profile": "quick",
        "base": {"name": "tiny", "digest": "b" * 64, "path": "/machine/path"},
        "lineage": LINEAGE,
        "built_at": "2026-12-01T11:12:40+00:00",
        **info,
    }
    with atomic_folder(dest, info=manifest) as tmp:
        (tmp / "model.safetensors").write_bytes(weights)
        (tmp / "config.json").write_text("{}")
    return dest


def test_a_built_folder_gives_its_manifest_record_without_machine_paths(tmp_path: Path) -> None:
    folder = _built(tmp_path / "compressed-l29-distilled")
    p = folder_provenance(folder)
    assert p is not None and p.manifest and p.warning is None
    manifest = json.loads((folder / "manifest.json").read_text())
    assert p.weights_sha256 == manifest["weights_sha256"] and p.weights_bytes == len(b"weights-1")
    assert (p.fingerprint, p.recipe, p.matrix, p.profile) == ("f" * 64, "tiny.toml", "tiny", "quick")
    assert p.base == "tiny@" + "b" * 12 and p.lineage == LINEAGE
    assert "/machine" not in json.dumps(p.to_dict()) and "built_at" not in p.to_dict()
    assert FolderProvenance.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert describe(p) == (
        "weights " + p.weights_sha256[:12] + ", manifest fingerprint ffffffffffff, recipe tiny.toml (matrix tiny, "
        "profile quick), built from tiny@bbbbbbbbbbbb: compressed-l29 [prune] -> compressed-l29-distilled [distill]"
    )


def test_a_folder_without_manifest_is_hashed_and_warns_in_one_line(tmp_path: Path) -> None:
    built = folder_provenance(_built(tmp_path / "built"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model.safetensors").write_bytes(b"weights-1")
    p = folder_provenance(elsewhere)
    assert p is not None and built is not None
    assert not p.manifest and p.weights_sha256 == built.weights_sha256  # the same bytes, the same hash
    assert p.warning is not None and "\n" not in p.warning
    assert p.warning.startswith("no manifest.json (built elsewhere?): identified by its weights hash ")
    assert folder_provenance(tmp_path / "missing") is None


def test_changes_name_each_step_parameter_that_differs_then_the_weights(tmp_path: Path) -> None:
    then = folder_provenance(_built(tmp_path / "a" / "compressed-l29-distilled"))
    lineage = [LINEAGE[0], {"variant": "compressed-l29-distilled", "steps": [
        {"step": "distill", "params": {"steps": 20, "lr": 0.0001, "seed": 1}}]}]  # fmt: skip
    now = folder_provenance(
        _built(tmp_path / "b" / "compressed-l29-distilled", b"weights-2", lineage=lineage, fingerprint="e" * 64)
    )
    assert then is not None and now is not None
    assert provenance_changes(then, now) == [
        "compressed-l29-distilled distill: seed (unset) -> 1, steps 10 -> 20",
        f"weights {then.weights_sha256[:12]} -> {now.weights_sha256[:12]}",
    ]


def test_changes_say_when_the_chain_the_recipe_or_the_manifest_changed() -> None:
    then = FolderProvenance(weights_sha256="a" * 64, manifest=True, fingerprint="1" * 64, recipe="tiny.toml",
                            lineage=LINEAGE)  # fmt: skip
    other_chain = replace(then, weights_sha256="c" * 64, lineage=[LINEAGE[1]], recipe="mine.toml")
    assert provenance_changes(then, other_chain)[:2] == [
        "recipe tiny.toml -> mine.toml",
        "built from compressed-l29 -> compressed-l29-distilled, now from compressed-l29-distilled",
    ]
    code_only = replace(then, fingerprint="2" * 64)
    assert provenance_changes(then, code_only) == [
        "manifest fingerprint 111111111111 -> 222222222222 with the same recipe and step parameters "
        "(builder code or tool versions changed)"
    ]
    copied = FolderProvenance(weights_sha256="d" * 64)
    assert provenance_changes(then, copied)[0].startswith("the folder now has no manifest.json")
    assert provenance_changes(then, then) == []
