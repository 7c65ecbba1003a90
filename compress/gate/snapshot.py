"""Golden files: what each variant answered, stored as readable JSON under ``golden/`` through syrupy.

Layout: ``golden/<gate>/<variant>.<engine>-<dtype>[-cuda[-eager]].json``, e.g.
``golden/tiny-exaone4/compressed-l29.vllm-float32.json`` (CPU) or ``...vllm-bfloat16-cuda.json`` (a GPU).
The engine, dtype and device kind are part of the name because they decide the text: float32 greedy answers
matched between vLLM and HF on the CPU, but on an H200 (vLLM 0.26 CUDA, float32) 2 of 30 answers drifted
from the CPU's after 45-77 characters at near-ties (SmolLM2 compressed-l29 'haiku-autumn', tiny EXAONE-4
base 'python-reverse'), and bf16 ones differ more. So CPU CI and GPU runners keep their own goldens.
16-bit answers are not even stable on one GPU: the same W4A16 folder in bf16 on the same H200 (vLLM 0.26)
answered 1 of 10 prompts differently after 55 characters on two days. So a bf16/fp16 golden matches when
the answers stay close (:func:`answer_drift`); float32 goldens must match exactly.
Timings are not stored (they are checked against floors instead); metrics are rounded so a diff shows
answers, not float noise. Only ``--snapshot-update`` writes these files.

Each golden records its provenance: ``provenance.folder`` (compress.folders.provenance: the weights hash, the
manifest fingerprint, recipe and build steps) and ``provenance.recorded_with`` (device, i.e. the GPU name or
``cpu``, and the engine packages' versions; engine and dtype are top-level keys). Only the weights decide: a
golden recorded from other weights fails saying how the folder changed (:func:`folder_changed`), before any
answer is compared; the rest is for the reader, so a golden recorded on one machine still matches on another
with other versions, and a rebuild that changed the fingerprint but not one byte of the weights (a builder edit,
a tool upgrade) still matches. Goldens written before provenance existed are compared by their answers alone
(their weights are unknown; :data:`PREDATES_PROVENANCE`); ``--snapshot-update`` adds it to them.

Discovery is switched off: one models folder is gated per run, and ``golden/`` holds other gates' and other
engines' files that this run must neither report as unused nor delete. Remove a retired variant's file by
hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from syrupy.data import SnapshotCollections
from syrupy.extensions.json import JSONSnapshotExtension

from compress.core.errors import CompressError
from compress.core.prompts import Prompt
from compress.core.similarity import OutputComparison, compare_outputs, is_non_empty
from compress.evaluation.run import ModelRun
from compress.folders.provenance import FolderProvenance, describe, provenance_changes

if TYPE_CHECKING:
    from syrupy.location import PyTestLocation
    from syrupy.types import SerializableData, SnapshotIndex

DIGITS = 4
"""Metrics are rounded to this many decimals in goldens."""
LOOSE_DTYPES = ("bfloat16", "float16")
"""Goldens in these dtypes are compared by closeness, not equality (module docstring)."""
ANSWER_AGREEMENT = 0.9
"""16-bit goldens: the mean similarity of the answers to the golden answers must reach this. One answer of
ten rewritten from its first word still passes (mean >= 0.9 when the rest are equal); a rebuilt or broken
model that changes most answers does not."""


PREDATES_PROVENANCE = (
    "golden files recorded before goldens carried provenance are compared by their answers only (the weights "
    "they came from are unknown); rerun the gate with --snapshot-update to record them"
)
"""The one warning for such goldens (pytest lists every case that gave it under the one message)."""


class GoldenProvenanceWarning(UserWarning):
    """A golden without provenance: compared, but not tied to the weights it was recorded from."""


class GoldenJSONExtension(JSONSnapshotExtension):
    """Sorted keys, 2-space indent, UTF-8 (Korean stays readable), a final newline: reviewable diffs."""

    golden_dir: ClassVar[Path] = Path("golden")
    gate_name: ClassVar[str] = "gate"
    updating: ClassVar[bool] = False
    """--snapshot-update: a golden whose weights are missing or differ is rewritten even if the answers match."""

    @classmethod
    def configure(cls, golden_dir: Path, gate_name: str, *, updating: bool = False) -> None:
        """Point the extension at one gate's folder (called once per process, from pytest_configure)."""
        cls.golden_dir = Path(golden_dir)
        cls.gate_name = gate_name
        cls.updating = updating

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(cls.golden_dir / cls._sanitize_filename(cls.gate_name))

    @classmethod
    def get_file_basename(cls, *, test_location: PyTestLocation, index: SnapshotIndex) -> str:
        variant = cls._sanitize_filename(variant_of(test_location))
        return f"{variant}.{cls._sanitize_filename(index)}" if isinstance(index, str) else variant

    @classmethod
    def matches_test_location(cls, *, test_location: PyTestLocation, snapshot_location: str) -> bool:
        return Path(snapshot_location).parent == Path(cls.dirname(test_location=test_location))

    def discover_snapshots(
        self, *, test_location: PyTestLocation, ignore_extensions: list[str] | None = None
    ) -> SnapshotCollections:
        return SnapshotCollections()

    def matches(self, *, serialized_data: SerializableData, snapshot_data: SerializableData) -> bool:
        """Equal as JSON apart from the provenance (a re-indented file still matches), or close for a 16-bit
        golden (:func:`answer_drift`); a file that is not JSON never matches. The weights are checked before
        (:func:`folder_changed`); under --snapshot-update a golden without them, or with others, is rewritten."""
        try:
            received, expected = json.loads(str(serialized_data)), json.loads(str(snapshot_data))
        except ValueError:
            return False
        if self.updating and weights_of(expected) != weights_of(received):
            return False
        received, expected = without_provenance(received), without_provenance(expected)
        if received == expected:
            return True
        return isinstance(expected, dict) and expected.get("dtype") in LOOSE_DTYPES and not answer_drift(
            expected, received
        )


def variant_of(test_location: PyTestLocation) -> str:
    """The ``variant`` parameter of a gate case (``test_golden[compressed-l29]`` -> ``compressed-l29``)."""
    callspec = getattr(test_location.item, "callspec", None)
    if callspec is not None and "variant" in callspec.params:
        return str(callspec.params["variant"])
    name = str(test_location.nodename or "")
    return name[name.find("[") + 1 : name.rfind("]")] if "[" in name else name


def golden_key(run: ModelRun) -> str:
    """``<engine>-<dtype>``, plus ``-cuda`` off the CPU and ``-eager`` for eager CUDA engines: what decides
    the text besides the model (eager float32 text on the H200 differed from compiled float32 text)."""
    key = f"{run.engine.get('engine', 'unknown')}-{run.engine.get('dtype', 'unknown')}"
    device = str(run.engine.get("device", "cpu"))
    if device == "cpu":
        return key
    return f"{key}-cuda-eager" if run.engine.get("enforce_eager") else f"{key}-cuda"


def golden_record(
    *, gate: str, run: ModelRun, prompts: list[Prompt], baseline: str, comparison: OutputComparison | None
) -> dict:
    """What a golden file holds for one variant: answers per prompt id and rounded metrics, no timings."""
    if run.result is None:
        raise ValueError(f"{run.name} has no answers")
    outputs: dict[str, dict] = {}
    for i, (prompt, gen) in enumerate(zip(prompts, run.result.generations, strict=True)):
        entry = {
            "prompt": prompt.text,
            "answer": gen.text,
            "output_tokens": gen.output_tokens,
            "finish_reason": gen.finish_reason,
        }
        if comparison is not None:
            entry["similarity"] = round(comparison.similarities[i], DIGITS)
        outputs[prompt.id] = entry
    record: dict = {
        "gate": gate,
        "variant": run.name,
        "engine": run.engine.get("engine"),
        "dtype": run.engine.get("dtype"),
        "outputs": outputs,
    }
    record["provenance"] = {
        "folder": run.provenance or FolderProvenance(weights_sha256=None).to_dict(),
        "recorded_with": {"device": run.engine.get("device"), "versions": run.engine.get("versions", {})},
    }
    if comparison is not None:
        record["compared_with"] = baseline
        record["metrics"] = {
            "avg_similarity": round(comparison.avg_similarity, DIGITS),
            "exact_match": round(comparison.exact_match, DIGITS),
            "non_empty_count": comparison.non_empty_count,
            "non_empty_rate": round(comparison.non_empty_rate, DIGITS),
        }
    return record


def without_provenance(record: object) -> object:
    return {k: v for k, v in record.items() if k != "provenance"} if isinstance(record, dict) else record


def folder_of(record: dict) -> FolderProvenance | None:
    """The folder provenance a golden (or a new record) carries; None for a golden older than provenance."""
    folder = (record.get("provenance") or {}).get("folder") if isinstance(record, dict) else None
    return FolderProvenance.from_dict(folder) if isinstance(folder, dict) else None


def weights_of(record: object) -> str | None:
    folder = folder_of(record) if isinstance(record, dict) else None
    return folder.weights_sha256 if folder else None


def folder_changed(expected: dict, received: dict, *, variant: str, key: str, path: Path) -> str | None:
    """Why a golden cannot stand for this folder (it was recorded from other weights), or None: the message
    says what the folder was built from then and now, which step parameters differ, and how many answers
    moved. A golden without provenance is None here (compared by its answers: :data:`PREDATES_PROVENANCE`)."""
    then, now = folder_of(expected), folder_of(received)
    if then is None or now is None or None in (then.weights_sha256, now.weights_sha256):
        return None  # unknown on one side (an old golden, a folder or cached run without it): answers decide
    if then.weights_sha256 == now.weights_sha256:
        return None
    old, new = expected.get("outputs") or {}, received.get("outputs") or {}
    moved = sum(1 for k in new if (old.get(k) or {}).get("answer") != new[k].get("answer"))
    answers = f"{moved} of {len(new)} answers differ from it" if moved else "the answers are still the same"
    lines = [
        f"golden: {variant} ({key}): the folder changed since {path} was recorded: it holds other weights "
        f"({answers}). Fix: if the new build is intended, rerun with --snapshot-update, review `git diff golden/` "
        "and commit; else restore the folder the golden was recorded from",
        f"  then: {describe(then)}",
        f"  now:  {describe(now)}",
    ]
    lines += [f"  changed: {change}" for change in provenance_changes(then, now)]
    return "\n".join(lines)


def answer_drift(expected: dict, received: dict) -> str | None:
    """Why a 16-bit record is not close to its golden, or None: everything but the answers and the metrics
    that follow from them is equal, every answer is as empty or non-empty as before, and the mean similarity
    of the answers to the golden ones is at least ``ANSWER_AGREEMENT``."""
    fixed = ("gate", "variant", "engine", "dtype", "compared_with")
    changed = [k for k in fixed if expected.get(k) != received.get(k)]
    old, new = expected.get("outputs") or {}, received.get("outputs") or {}
    if changed or set(old) != set(new) or any(old[k].get("prompt") != new[k].get("prompt") for k in old):
        return f"not the same gate, variant, engine or prompts (changed: {', '.join(changed) or 'prompts'})"
    if not old:
        return None
    ids = list(old)
    before = [old[k].get("answer", "") for k in ids]
    comparison = compare_outputs(before, [new[k].get("answer", "") for k in ids])
    flipped = [k for k, b, now in zip(ids, before, comparison.non_empty, strict=True) if is_non_empty(b) != now]
    if flipped:
        return f"answers became empty or non-empty: {', '.join(flipped)}"
    mean = comparison.avg_similarity
    if mean >= ANSWER_AGREEMENT:
        return None
    scores = sorted(zip(ids, comparison.similarities, strict=True), key=lambda kv: kv[1])
    worst = ", ".join(f"{k} {v:.2f}" for k, v in scores[:3])
    return f"answers moved from the golden ones: mean similarity {mean:.3f} < {ANSWER_AGREEMENT} (lowest: {worst})"


def golden_problem(path: Path, *, variant: str, key: str, updating: bool) -> str | None:
    """A one-line reason the golden cannot be compared (missing, or not JSON), or None.

    With ``--snapshot-update`` nothing is a problem: the file is (re)written.
    """
    if updating:
        return None
    if not path.is_file():
        return str(
            CompressError(
                f"no golden file for {variant} ({key}) at {path}",
                "run the gate with --snapshot-update, review the new file and commit it",
            )
        )
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return str(
            CompressError(
                f"golden file {path} is not valid JSON ({exc})",
                f"restore it (git checkout -- {path}) or rewrite it with --snapshot-update",
            )
        )
    return None
