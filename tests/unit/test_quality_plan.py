"""The gate measures the baseline first and only then decides which task formats a variant is measured in:
a format whose baseline figures cannot carry a recovery costs a variant nothing, and still shows as not
judged with the baseline's figure. Fake engines that count what they were asked to do; no model."""

from __future__ import annotations

import pytest

from compress.core.fidelity import TokenLogprobs
from compress.core.tasks import TaskItem
from compress.engines.base import BatchResult, Generation, SamplingConfig, ScoreRequest
from compress.evaluation.quality import QualityPlan, measure_baseline, measure_variant
from compress.gate.checks import task_verdicts

ITEMS = [
    TaskItem(f"q{i}", "en", "arithmetic", f"What is {i} plus one?", tuple(f"n{i}-{k}" for k in range(4)), i % 4,
             (f"n{i}-{i % 4}",))
    for i in range(200)
]  # fmt: skip
RIGHT = {item.choices[item.answer_index] for item in ITEMS}


class FakeEngine:
    """Words are tokens. ``knows``: the right choice scores highest (else the first choice: guessing, 0.25);
    ``answers``: the short answer is the right one for the first ``answers`` items, "no idea" after."""

    name, model_dir, dtype, load_seconds = "fake", "fake", "float32", 0.0

    def __init__(self, *, knows: bool, answers: int) -> None:
        self.knows, self.answers = knows, answers
        self.vocab: dict[str, int] = {}
        self.scored = 0
        self.chatted = 0

    def encode(self, text: str, *, special: bool = False) -> tuple[int, ...]:
        return ((1,) if special else ()) + tuple(self.vocab.setdefault(w, len(self.vocab) + 2) for w in text.split())

    def score(self, requests: list[ScoreRequest], top_k: int) -> list[list[TokenLogprobs]]:
        words = {v: k for k, v in self.vocab.items()}
        self.scored += len(requests)
        out = []
        for r in requests:
            text = " ".join(words[t] for t in r.continuation)
            good = text in RIGHT if self.knows else text.endswith("-0")
            out.append([TokenLogprobs(t, 0.0 if good else -2.0, {t: 0.0}) for t in r.continuation])
        return out

    def chat(self, prompts: list[str], sampling: SamplingConfig) -> BatchResult:
        self.chatted += len(prompts)
        by_prompt = {item.prompt: i for i, item in enumerate(ITEMS)}
        texts = [
            ITEMS[by_prompt[p]].answers[0] if p in by_prompt and by_prompt[p] < self.answers else "no idea"
            for p in prompts
        ]
        return BatchResult([Generation(p, t, 1, 1) for p, t in zip(prompts, texts, strict=True)], 0.0)


PLAN = QualityPlan(fidelity=False, tasks=ITEMS, judgeable_only=True)


def _measure(base_engine: FakeEngine, variant_engine: FakeEngine, plan: QualityPlan = PLAN):
    base = measure_baseline(base_engine, plan, SamplingConfig(), [], [])
    return base, measure_variant(variant_engine, plan, base)


def test_a_variant_is_measured_only_in_the_formats_its_baseline_can_judge() -> None:
    # the baseline knows every multiple-choice answer but gets 20 of 200 short answers (+-0.2: not judgeable)
    base_engine, variant_engine = FakeEngine(knows=True, answers=20), FakeEngine(knows=True, answers=200)
    base, mine = _measure(base_engine, variant_engine)
    assert base_engine.scored == 800 and base_engine.chatted == 200  # the baseline measures both
    assert variant_engine.scored == 800 and variant_engine.chatted == 0  # the variant: multiple choice only
    assert mine.tasks is not None and mine.tasks.answers == () and len(mine.tasks.mc_correct) == 200
    assert base.tasks is not None
    mc, short = task_verdicts(base.tasks, mine.tasks, ITEMS)
    assert mc.recovery is not None and mc.recovery.ratio == pytest.approx(1.0)
    assert short.recovery is None
    assert short.note == "short answer: not measured for variants, the baseline's accuracy 0.100 (20/200) cannot " \
        "support a recovery to +-0.08"  # fmt: skip


def test_multiple_choice_at_chance_costs_a_variant_no_scoring_and_reports_the_baselines_figure() -> None:
    base_engine, variant_engine = FakeEngine(knows=False, answers=180), FakeEngine(knows=True, answers=160)
    base, mine = _measure(base_engine, variant_engine)
    assert variant_engine.scored == 0 and variant_engine.chatted == 200  # short answers only
    assert base.tasks is not None and mine.tasks is not None and mine.tasks.mc_correct == ()
    mc, short = task_verdicts(base.tasks, mine.tasks, ITEMS)
    assert mc.recovery is None
    assert mc.note == "multiple choice: not judged, the baseline's accuracy 0.250 (50/200, SE 0.031) is not " \
        "clearly above chance (0.25); not measured for variants"  # fmt: skip
    assert short.recovery is not None and short.recovery.ratio == pytest.approx(160 / 180)


def test_nothing_judgeable_means_nothing_measured_for_a_variant() -> None:
    base_engine, variant_engine = FakeEngine(knows=False, answers=0), FakeEngine(knows=True, answers=200)
    base, mine = _measure(base_engine, variant_engine)
    assert (variant_engine.scored, variant_engine.chatted, mine.tasks) == (0, 0, None)
    assert base.tasks is not None
    verdicts = task_verdicts(base.tasks, base.tasks, ITEMS)  # what test_task_accuracy does then
    assert [v.recovery for v in verdicts] == [None, None]
    assert all("not judged" in (v.note or "") for v in verdicts)


def test_eval_compare_measures_every_format_of_every_model() -> None:
    plan = QualityPlan(fidelity=False, tasks=ITEMS)  # judgeable_only off
    base_engine, variant_engine = FakeEngine(knows=False, answers=0), FakeEngine(knows=True, answers=200)
    _, mine = _measure(base_engine, variant_engine, plan)
    assert (variant_engine.scored, variant_engine.chatted) == (800, 200)
    assert mine.tasks is not None and sum(mine.tasks.mc_correct) == 200 and sum(mine.tasks.short_correct) == 200


def test_requests_group_by_a_shared_context_only_when_consecutive_and_non_empty() -> None:
    from compress.engines.hf_engine import context_groups

    a, b = (1, 2, 3), (1, 2)
    requests = [ScoreRequest(a, (4,)), ScoreRequest(a, (5, 6)), ScoreRequest(b, (7,)), ScoreRequest(a, (4,)),
                ScoreRequest(a, ()), ScoreRequest(a, (8,)), ScoreRequest((), (9,)), ScoreRequest((), (9,))]  # fmt: skip
    assert context_groups(requests) == [[0, 1], [2], [3], [4], [5], [6], [7]]
