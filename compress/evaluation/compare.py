"""eval-compare: a baseline and its candidates over the same prompts, one model at a time, into one report.

Each model is loaded once, warmed up, timed over repeated batches and closed before the next one loads, so
one process holds one engine at a time. A model that fails (missing folder, load error, crash) becomes a
``failed`` entry with its error and the others still run. Comparisons with the baseline (similarity, exact
match, speedups) are computed afterwards from plain data by :func:`build_report`, which the unit tests and
the gate can call on runs they made themselves.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from compress import paths
from compress.engines import SamplingConfig
from compress.errors import CompressError
from compress.evaluation.run import ModelRun, run_model
from compress.evaluation.timing import speedup, token_speedup
from compress.metrics import compare_outputs, is_non_empty
from compress.prompts import Prompt
from compress.reports.json_report import (
    CompareReport,
    EngineInfo,
    ModelReport,
    OutputRecord,
    PromptInfo,
    SamplingInfo,
    Settings,
    TimingInfo,
    host_info,
    now,
)

log = logging.getLogger(__name__)

BASELINE_VARIANT = "base"
# Engine fields that must match the baseline's for a speedup to measure compression, not the engine.
COMPARABLE_KEYS = ("engine", "device", "dtype")


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


def _is_variant_folder(folder: Path) -> bool:
    """A built variant: a folder with config.json that is not a builder's temp or lock leftover."""
    name = folder.name
    leftover = name.startswith(".") or ".tmp-" in name or ".old-" in name
    return folder.is_dir() and not leftover and (folder / "config.json").is_file()


def matrix_models(matrix: str, only: list[str] | None = None) -> tuple[ModelSpec, list[ModelSpec]]:
    """Baseline = ``<matrix_dir>/base``; candidates = every other variant folder there, sorted by name
    (or only the variants named in ``only``, in that order)."""
    folder = paths.matrix_dir(matrix)
    if not folder.is_dir():
        raise CompressError(
            f"variant matrix {matrix!r} has no folder ({folder})",
            f"build it first (python -m compress build {matrix}, or tox -e build) or check EXAONE_COMPRESSION_HOME",
        )
    baseline = ModelSpec(BASELINE_VARIANT, folder / BASELINE_VARIANT)
    found = sorted(p.name for p in folder.iterdir() if p.name != BASELINE_VARIANT and _is_variant_folder(p))
    if only:
        unknown = [name for name in only if name not in found]
        if unknown:
            raise CompressError(
                f"matrix {matrix!r} has no variant {', '.join(unknown)} in {folder}",
                f"pick from: {', '.join(found) or '(none built)'}",
            )
        found = list(only)
    return baseline, [ModelSpec(name, folder / name) for name in found]


def compare_models(
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
) -> CompareReport:
    """Run the baseline, then each candidate, and compare them. Progress goes to stderr."""
    settings = Settings(
        engine=engine, dtype=dtype, warmup=warmup, repeats=repeats, tensor_parallel_size=tensor_parallel_size
    )
    texts = [p.text for p in prompts]
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
        )
        log.info("[%d/%d] %s: %s", i, len(specs), spec.name, _summary(run))
        runs.append(run)
    bar.close()
    return build_report(runs[0], runs[1:], prompts, sampling, settings)


def _summary(run: ModelRun) -> str:
    if not run.ok or run.timing is None:
        first_line = (run.error or "").strip().splitlines()[:1]
        return f"FAILED: {first_line[0] if first_line else 'unknown error'}"
    engine = run.engine.get("engine", "?")
    return (
        f"ok ({engine}), load {run.load_seconds:.1f} s, generation {run.timing.median:.2f} s median of "
        f"{len(run.timing.runs)}, {run.timing.output_tokens} tokens, {run.timing.tokens_per_second:.1f} tok/s"
    )


def build_report(
    baseline: ModelRun,
    candidates: list[ModelRun],
    prompts: list[Prompt],
    sampling: SamplingConfig,
    settings: Settings,
) -> CompareReport:
    """Compare finished runs with the baseline run (pure: no engines, no I/O)."""
    models = {
        run.name: model_report(run, baseline, prompts, settings, role=role)
        for run, role in [(baseline, "baseline"), *((c, "candidate") for c in candidates)]
    }
    if len(models) != 1 + len(candidates):
        raise ValueError("model names must be unique")
    return CompareReport(
        created=now(),
        baseline=baseline.name,
        prompts=[PromptInfo(id=p.id, text=p.text, lang=p.lang) for p in prompts],
        sampling=SamplingInfo(**asdict(sampling)),
        settings=settings,
        host=host_info(),
        models=models,
    )


def engine_info(run: ModelRun) -> EngineInfo:
    info = run.engine or {}
    return EngineInfo(
        engine=info.get("engine"),
        dtype=info.get("dtype"),
        device=info.get("device"),
        versions=info.get("versions", {}),
    )


def model_report(
    run: ModelRun, baseline: ModelRun, prompts: list[Prompt], settings: Settings, *, role: str
) -> ModelReport:
    """One model's entry: its own figures, and the comparisons when it and the baseline both ran."""
    fields: dict = {
        "name": run.name,
        "model_dir": run.model_dir,
        "role": role,
        "status": "ok" if run.ok else "failed",
        "error": run.error,
        "load_seconds": run.load_seconds,
        "engine": engine_info(run),
    }
    if not run.ok or run.result is None or run.timing is None:
        return ModelReport(**fields)
    if len(run.result.generations) != len(prompts):
        raise ValueError(f"{run.name}: {len(run.result.generations)} outputs for {len(prompts)} prompts")
    timing = run.timing
    non_empty = [is_non_empty(t) for t in run.texts]
    fields.update(
        elapsed=timing.median,
        output_tokens=timing.output_tokens,
        tokens_per_second=timing.tokens_per_second,
        deterministic=run.result.metadata.get("deterministic"),
        timing=TimingInfo(
            runs=timing.runs,
            median=timing.median,
            best=timing.best,
            spread=timing.spread,
            warmup=settings.warmup,
            repeats=settings.repeats,
            output_tokens=timing.output_tokens,
            tokens_per_second=timing.tokens_per_second,
        ),
        non_empty_count=sum(non_empty),
        non_empty_rate=sum(non_empty) / len(non_empty) if non_empty else 0.0,
    )
    similarities: list[float | None] = [None] * len(non_empty)
    exact: list[bool | None] = [None] * len(non_empty)
    if baseline.ok and baseline.timing is not None:
        comparison = compare_outputs(baseline.texts, run.texts)
        similarities, exact = list(comparison.similarities), list(comparison.exact)
        mine, theirs = engine_info(run), engine_info(baseline)
        fields.update(
            avg_similarity=comparison.avg_similarity,
            exact_match=comparison.exact_match,
            speedup=speedup(baseline.timing, timing),
            token_speedup=token_speedup(baseline.timing, timing),
            comparable=all(getattr(mine, k) == getattr(theirs, k) for k in COMPARABLE_KEYS),
        )
    fields["outputs"] = [
        OutputRecord(
            id=prompt.id,
            prompt=prompt.text,
            output=gen.text,
            similarity=sim,
            exact=ex,
            non_empty=ne,
            output_tokens=gen.output_tokens,
            prompt_tokens=gen.prompt_tokens,
            finish_reason=gen.finish_reason,
        )
        for prompt, gen, sim, ex, ne in zip(
            prompts, run.result.generations, similarities, exact, non_empty, strict=True
        )
    ]
    return ModelReport(**fields)
