"""Quality measurements made while a model is loaded: fidelity to the baseline and task accuracy.

The baseline measures first: its greedy answers to each fidelity prompt set become :class:`Reference` s (the
gate's own prompts reuse the answers it already gave), and it answers the task set. Every variant then
scores those references and answers the same tasks. The results are plain data (:class:`Quality`), so they
travel between pytest-xdist workers and into reports like the answers do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from compress.core.accuracy import chance_accuracy, supports_recovery
from compress.core.fidelity import PromptFidelity
from compress.core.prompts import Prompt
from compress.core.tasks import TaskItem
from compress.engines.base import Engine, Generation, SamplingConfig
from compress.evaluation.fidelity import (
    TOP_K,
    Reference,
    make_reference,
    prompt_fidelity_from_dict,
    prompt_fidelity_to_dict,
    score_variant,
)
from compress.evaluation.tasks import TaskResult, run_tasks

GATE_SET = "gate"
"""The fidelity set made of the gate's own prompts (their answers are the goldens' answers)."""


@dataclass(frozen=True)
class QualityPlan:
    """What to measure. ``fidelity_sets`` maps a set's name to its prompts (besides :data:`GATE_SET`)."""

    fidelity: bool = True
    fidelity_sets: dict[str, list[Prompt]] = field(default_factory=dict)
    tasks: list[TaskItem] = field(default_factory=list)
    top_k: int = TOP_K
    judgeable_only: bool = False
    """Variants skip the task formats the baseline cannot support a recovery in (the gate: CPU minutes);
    eval-compare measures everything."""

    @property
    def active(self) -> bool:
        return self.fidelity or bool(self.tasks)


@dataclass
class Quality:
    references: dict[str, Reference] = field(default_factory=dict)
    """The baseline's side of each fidelity set (the baseline's run only)."""
    fidelity: dict[str, list[PromptFidelity]] = field(default_factory=dict)
    """Per fidelity set, per prompt: the variant against the baseline (variants only)."""
    tasks: TaskResult | None = None
    seconds: float = 0.0
    """Time these measurements took: never part of a speed figure."""
    error: str | None = None
    """Why they could not be made (the quality cases report it)."""

    def to_dict(self) -> dict:
        return {
            "references": {k: v.to_dict() for k, v in self.references.items()},
            "fidelity": {k: [prompt_fidelity_to_dict(p) for p in v] for k, v in self.fidelity.items()},
            "tasks": None if self.tasks is None else self.tasks.to_dict(),
            "seconds": self.seconds,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Quality:
        return cls(
            references={k: Reference.from_dict(v) for k, v in data.get("references", {}).items()},
            fidelity={k: [prompt_fidelity_from_dict(p) for p in v] for k, v in data.get("fidelity", {}).items()},
            tasks=TaskResult.from_dict(data["tasks"]) if data.get("tasks") else None,
            seconds=float(data.get("seconds", 0.0)),
            error=data.get("error"),
        )


def measure_baseline(
    engine: Engine, plan: QualityPlan, sampling: SamplingConfig, gate_prompts: list[Prompt], answers: list[Generation]
) -> Quality:
    """The baseline's references (its own answers, scored by itself) and its task answers."""
    started = time.perf_counter()
    quality = Quality()
    if plan.fidelity:
        quality.references[GATE_SET] = make_reference(engine, [p.id for p in gate_prompts], answers, plan.top_k)
        for name, prompts in plan.fidelity_sets.items():
            generated = engine.chat([p.text for p in prompts], sampling).generations
            quality.references[name] = make_reference(engine, [p.id for p in prompts], generated, plan.top_k)
    if plan.tasks:
        quality.tasks = run_tasks(engine, plan.tasks)
    quality.seconds = time.perf_counter() - started
    return quality


def judgeable_formats(base: TaskResult, items: list[TaskItem]) -> tuple[bool, bool]:
    """(multiple choice, short answer): where the baseline can support a recovery ratio at all. A variant's
    answers in a format the check would only report are not worth the minutes they cost on a CPU."""
    chance = chance_accuracy([len(i.choices) for i in items])
    return supports_recovery(base.mc_correct, chance), supports_recovery(base.short_correct, 0.0)


def measure_variant(engine: Engine, plan: QualityPlan, baseline: Quality) -> Quality:
    """The variant replays every baseline reference and answers the tasks: with ``judgeable_only``, only in
    the formats the baseline's own figures can support (:func:`judgeable_formats`); a format left out has
    empty fields and the gate reports it as not judged, with the baseline's accuracy."""
    started = time.perf_counter()
    quality = Quality()
    if plan.fidelity:
        quality.fidelity = {name: score_variant(engine, ref, plan.top_k) for name, ref in baseline.references.items()}
    if plan.tasks and baseline.tasks is not None:
        mc, short = judgeable_formats(baseline.tasks, plan.tasks) if plan.judgeable_only else (True, True)
        quality.tasks = run_tasks(engine, plan.tasks, mc=mc, short=short) if (mc or short) else None
    quality.seconds = time.perf_counter() - started
    return quality
