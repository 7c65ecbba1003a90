"""Task accuracy through an engine: each item as multiple choice by log-likelihood and as a short answer.

Multiple choice follows lm-evaluation-harness's ``multiple_choice`` exactly (the context and continuation of
compress/data/tasks/checkable_qa_mc.yaml): the item counts as right when the right choice has the highest
summed log-probability (``acc``; ``acc_norm`` divides by the choice's length in characters). Short answers
are greedy ``chat()`` answers checked by
:func:`compress.core.accuracy.check_short_answer`. One scoring call and one batched chat call per model.
"""

from __future__ import annotations

from dataclasses import dataclass

from compress.core.accuracy import check_short_answer, pick_choice
from compress.core.tasks import TaskItem
from compress.engines.base import Engine, SamplingConfig, ScoreRequest

SHORT_ANSWER = SamplingConfig(min_tokens=1, max_tokens=24)
"""A word or a number fits; ``min_tokens=1`` so an empty answer is the model's choice, not the cap's."""


@dataclass(frozen=True)
class TaskResult:
    """Per item, in the task file's order."""

    item_ids: tuple[str, ...]
    choice: tuple[int, ...]
    """The choice with the highest summed log-probability (``acc``)."""
    choice_norm: tuple[int, ...]
    """The same, per character of the choice (``acc_norm``)."""
    mc_correct: tuple[bool, ...]
    answers: tuple[str, ...]
    short_correct: tuple[bool, ...]
    n_choices: tuple[int, ...] = ()
    """Choices per item (what guessing would score)."""

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict) -> TaskResult:
        return cls(**{k: tuple(v) for k, v in data.items()})


def run_tasks(engine: Engine, items: list[TaskItem], *, mc: bool = True, short: bool = True) -> TaskResult:
    """Both formats; ``mc=False`` or ``short=False`` leaves that format out (its fields empty), where the
    baseline showed it could not be judged."""
    choice: list[int] = []
    choice_norm: list[int] = []
    if mc:
        requests = [mc_request(engine, item.mc_context, text) for item in items for text in item.choices]
        scored = iter(engine.score(requests, top_k=1))
        for item in items:
            sums = [sum(p.target_logprob for p in next(scored)) for _ in item.choices]
            choice.append(pick_choice(sums))
            choice_norm.append(pick_choice(sums, item.choices, normalize=True))
    answers = engine.chat([item.prompt for item in items], SHORT_ANSWER).texts if short else []
    return TaskResult(
        item_ids=tuple(item.id for item in items),
        choice=tuple(choice),
        choice_norm=tuple(choice_norm),
        mc_correct=tuple(c == item.answer_index for c, item in zip(choice, items, strict=False)),
        answers=tuple(answers),
        short_correct=tuple(check_short_answer(a, item.answers) for a, item in zip(answers, items, strict=False)),
        n_choices=tuple(len(item.choices) for item in items),
    )


def mc_request(engine: Engine, context: str, choice: str) -> ScoreRequest:
    """lm-eval's split of context and continuation: encode the whole text and the context (with the model's
    usual special tokens), and score what the whole adds beyond the context's tokens."""
    whole = engine.encode(context + " " + choice, special=True)
    head = engine.encode(context, special=True)
    cut = len(head)
    while cut > 1 and whole[:cut] != head[:cut]:  # a merge across the boundary: score from where they agree
        cut -= 1
    return ScoreRequest(context=whole[:cut], continuation=whole[cut:])
