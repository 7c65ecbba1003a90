"""eval-compare: a baseline and its candidates over the same prompts, one model at a time, into one report.

Each model is loaded once, warmed up, timed over repeated batches and closed before the next one loads, so
one process holds one engine at a time. A model that fails (missing folder, load error, crash) becomes a
``failed`` entry with its error and the others still run. Comparisons with the baseline (similarity, exact
match, speedups) are made afterwards from the plain runs by :func:`compress.reports.compare.build_report`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from compress.core import paths
from compress.core.errors import CompressError
from compress.core.prompts import Prompt
from compress.engines import SamplingConfig
from compress.engines.base import Engine
from compress.evaluation.quality import Quality, QualityPlan, measure_baseline, measure_variant
from compress.evaluation.run import ModelRun, run_model
from compress.folders.matrix import BASELINE, list_variants

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ModelSpec:
    """A model to run: the name it has in the report, and its folder."""

    name: str
    model_dir: Path


def name_models(folders: list[str | Path]) -> list[ModelSpec]:
    """Name each folder by its basename; where two basenames clash, by the path as given."""
    base_names = [Path(f).name or str(f) for f in folders]
    specs = []
    for folder, base_name in zip(folders, base_names, strict=True):
        name = base_name if base_names.count(base_name) == 1 else str(folder)
        specs.append(ModelSpec(name=name, model_dir=Path(folder)))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CompressError(f"models given twice: {', '.join(dup)}", "list each model folder once")
    return specs


def matrix_models(matrix: str, only: list[str] | None = None) -> tuple[ModelSpec, list[ModelSpec]]:
    """Baseline = ``<matrix_dir>/base``; candidates = every other variant folder there, sorted by name
    (or only the variants named in ``only``, in that order)."""
    folder = paths.matrix_dir(matrix)
    if not folder.is_dir():
        raise CompressError(
            f"variant matrix {matrix!r} has no folder ({folder})",
            f"build it first (python -m compress build {matrix}, or tox -e build) or check EXAONE_COMPRESSION_HOME",
        )
    baseline = ModelSpec(BASELINE, folder / BASELINE)
    found = list_variants(folder, BASELINE, built_only=True)
    if only:
        unknown = [name for name in only if name not in found]
        if unknown:
            raise CompressError(
                f"matrix {matrix!r} has no variant {', '.join(unknown)} in {folder}",
                f"pick from: {', '.join(found) or '(none built)'}",
            )
        found = list(only)
    return baseline, [ModelSpec(name, folder / name) for name in found]


def run_models(
    baseline: ModelSpec,
    candidates: list[ModelSpec],
    prompts: list[Prompt],
    sampling: SamplingConfig,
    *,
    engine: str = "auto",
    dtype: str | None = None,
    warmup: int = 1,
    repeats: int = 3,
    tensor_parallel_size: int = 1,
    trust_remote_code: bool = False,
    quality: QualityPlan | None = None,
) -> list[ModelRun]:
    """Run the baseline, then each candidate (baseline first in the result). Progress goes to stderr.

    With ``quality``, each model also measures fidelity to the baseline and task accuracy while it is loaded
    (after its timed batches, so they never enter a speed figure)."""
    texts = [p.text for p in prompts]
    plan = quality or QualityPlan(fidelity=False)
    base_quality: list[Quality] = []

    def measure(engine: Engine, run: ModelRun) -> None:
        if not plan.active or run.result is None:
            return
        try:
            if not base_quality:
                run.quality = measure_baseline(engine, plan, sampling, prompts, run.result.generations)
                base_quality.append(run.quality)
            else:
                run.quality = measure_variant(engine, plan, base_quality[0])
        except Exception as exc:  # the model's other figures stand
            run.quality = Quality(error=" ".join(f"{type(exc).__name__}: {exc}".split()))

    specs = [baseline, *candidates]
    runs: list[ModelRun] = []
    bar = tqdm(specs, desc="eval-compare", unit="model", file=sys.stderr, dynamic_ncols=True)
    for i, spec in enumerate(bar, start=1):
        bar.set_postfix_str(spec.name)
        log.info("[%d/%d] %s: %s", i, len(specs), spec.name, spec.model_dir)
        run = run_model(
            spec.name,
            spec.model_dir,
            texts,
            sampling,
            engine=engine,
            dtype=dtype,
            warmup=warmup,
            repeats=repeats,
            tensor_parallel_size=tensor_parallel_size,
            trust_remote_code=trust_remote_code,
            while_loaded=measure if (i == 1 or base_quality) else None,
        )
        log.info("[%d/%d] %s: %s", i, len(specs), spec.name, _summary(run))
        runs.append(run)
    bar.close()
    return runs


def _summary(run: ModelRun) -> str:
    if not run.ok or run.timing is None:
        first_line = (run.error or "").strip().splitlines()[:1]
        return f"FAILED: {first_line[0] if first_line else 'unknown error'}"
    engine = run.engine.get("engine", "?")
    return (
        f"ok ({engine}), load {run.load_seconds:.1f} s, generation {run.timing.median:.2f} s median of "
        f"{len(run.timing.runs)}, {run.timing.output_tokens} tokens, {run.timing.tokens_per_second:.1f} tok/s"
    )
