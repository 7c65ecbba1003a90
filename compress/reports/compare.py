"""Finished runs -> an eval-compare report: each model's figures and its comparison with the baseline.

Pure (no engines, no I/O), so eval-compare, the gate and the unit tests build reports the same way from runs
they made themselves.
"""

from __future__ import annotations

from dataclasses import asdict

from compress.core.accuracy import accuracy, chance_accuracy, recovery
from compress.core.fidelity import PromptFidelity, summarize
from compress.core.prompts import Prompt
from compress.core.similarity import compare_outputs, is_non_empty
from compress.engines import SamplingConfig
from compress.evaluation.run import ModelRun
from compress.evaluation.tasks import TaskResult
from compress.evaluation.timing import speedup, token_speedup
from compress.reports.json_report import (
    CompareReport,
    EngineInfo,
    FidelityInfo,
    FolderInfo,
    ModelReport,
    OutputRecord,
    PromptInfo,
    SamplingInfo,
    Settings,
    TaskInfo,
    TimingInfo,
    host_info,
    now,
)

COMPARABLE_KEYS = ("engine", "device", "dtype")
"""Engine fields that must match the baseline's for a speedup to measure compression, not the engine."""


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


def folder_info(run: ModelRun) -> FolderInfo | None:
    return FolderInfo(**run.provenance) if run.provenance else None


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
        "provenance": folder_info(run),
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
    fields.update(quality_fields(run, baseline))
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


def fidelity_info(prompts: list[PromptFidelity]) -> FidelityInfo:
    s = summarize(prompts)
    return FidelityInfo(
        **{k: v for k, v in asdict(s).items() if k != "worst"},
        worst=[(pid, kl) for pid, kl in s.worst],
        first_divergences={p.prompt_id: p.divergence.index if p.divergence else None for p in prompts},
    )


def task_info(items_n: int, mine: TaskResult, base: TaskResult | None, chance: float) -> TaskInfo:
    mc, short = accuracy(mine.mc_correct), accuracy(mine.short_correct)
    info: dict = {
        "n_items": items_n,
        "mc_accuracy": mc.acc if mine.mc_correct else None,
        "mc_accuracy_se": mc.se if mine.mc_correct else None,
        "short_accuracy": short.acc if mine.short_correct else None,
        "short_accuracy_se": short.se if mine.short_correct else None,
        "chance": chance,
    }
    if base is not None:
        for key, b, v in (("mc", base.mc_correct, mine.mc_correct), ("short", base.short_correct, mine.short_correct)):
            if any(b) and len(v) == len(b):
                r = recovery(b, v)
                info[f"{key}_recovery"], info[f"{key}_recovery_se"] = r.ratio, r.se
    return TaskInfo(**info)


def quality_fields(run: ModelRun, baseline: ModelRun) -> dict:
    """The report's fidelity and task fields, from what the gate or eval-compare measured (none: nothing)."""
    q = run.quality
    if q is None or q.error:
        return {}
    fields: dict = {"quality_seconds": q.seconds}
    if q.fidelity:
        sets = {name: fidelity_info(scored) for name, scored in q.fidelity.items() if scored}
        pooled = [p for scored in q.fidelity.values() for p in scored]
        if pooled:
            sets["all"] = fidelity_info(pooled)
            fields.update(mean_kl=sets["all"].mean_kl, p99_kl=sets["all"].p99_kl,
                          top1_agreement=sets["all"].top1_agreement, fidelity=sets)  # fmt: skip
    if q.tasks is not None:
        base_tasks = baseline.quality.tasks if baseline.quality and run is not baseline else None
        n_choices = q.tasks.n_choices or (4,)
        info = task_info(len(q.tasks.item_ids), q.tasks, base_tasks, chance_accuracy(list(n_choices)))
        fields.update(tasks=info, task_accuracy=info.mc_accuracy, task_recovery=info.mc_recovery)
    return fields
