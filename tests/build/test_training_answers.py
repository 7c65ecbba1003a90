"""The base's answers to the training prompts: made one batch at a time, cached per batch, and the first few
(what importance scoring and AWQ calibration read) are the very ones a full run makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.builders import common
from compress.builders.common import BuildContext, base_answers
from compress.core.prompts import Prompt

PROMPTS = [
    Prompt(id=f"p{i}", text=t) for i, t in enumerate(["Hi.", "Name a colour.", "Count to three.", "Why?", "Say yes."])
]


@pytest.fixture
def five_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("compress.core.prompts.load_training_prompts", lambda: PROMPTS)


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Records each batch that reached the model (the cached ones do not)."""
    seen: list[list[str]] = []
    answer = common._AnswerGenerator.answer

    def counting(self: common._AnswerGenerator, prompts: list[str]) -> list[common.Sample]:
        seen.append(list(prompts))
        return answer(self, prompts)

    monkeypatch.setattr(common._AnswerGenerator, "answer", counting)
    return seen


@pytest.mark.usefixtures("five_prompts")
def test_a_limit_generates_only_the_batches_it_needs_and_a_full_run_reuses_them(
    tiny_exaone4_dir: Path, tmp_path: Path, batches: list[list[str]]
) -> None:
    ctx = BuildContext(base_dir=tiny_exaone4_dir, cache_dir=tmp_path / "cache")
    first = base_answers(ctx, max_new_tokens=8, batch_size=2, limit=3)
    assert len(first) == 3 and batches == [["Hi.", "Name a colour."], ["Count to three.", "Why?"]]
    every = base_answers(ctx, max_new_tokens=8, batch_size=2)
    assert batches[2:] == [["Say yes."]], "the two cached batches were generated again"
    assert len(every) == 5 and every[:3] == first
    assert all(s.loss_start < len(s.input_ids) for s in every)


@pytest.mark.usefixtures("five_prompts")
def test_the_first_answers_of_a_full_run_equal_those_of_a_limited_one(tiny_exaone4_dir: Path, tmp_path: Path) -> None:
    """Two caches, so nothing is shared: each batch is padded to its own longest prompt only, so what comes
    before a prompt in the list never changes its answer."""
    limited = base_answers(
        BuildContext(base_dir=tiny_exaone4_dir, cache_dir=tmp_path / "a"), max_new_tokens=12, batch_size=2, limit=2
    )
    full = base_answers(
        BuildContext(base_dir=tiny_exaone4_dir, cache_dir=tmp_path / "b"), max_new_tokens=12, batch_size=2
    )
    assert full[:2] == limited
    assert base_answers(BuildContext(base_dir=tiny_exaone4_dir), max_new_tokens=12, batch_size=2, limit=0) == []
