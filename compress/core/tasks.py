"""The project's task set: questions with one checkable answer, English and Korean
(``compress/data/tasks/checkable_qa.jsonl``, written for this project; its README says how it was made).

Each item is scored two ways (compress/evaluation/tasks.py): as multiple choice by log-likelihood, the way
lm-evaluation-harness scores ``multiple_choice`` tasks, and as a short free-text answer through ``chat()``.
The same JSONL file is what the two lm-eval task YAMLs beside it read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from compress.core.errors import CompressError
from compress.core.prompts import check_entries

TASKS_FILE = "tasks/checkable_qa.jsonl"
INSTRUCTIONS = {"en": "Answer with one word or number.", "ko": "한 단어나 숫자로 답하세요."}
"""Appended to each question, in its language, so a chat model answers briefly and checkably."""


@dataclass(frozen=True)
class TaskItem:
    id: str
    lang: str
    category: str
    question: str
    choices: tuple[str, ...]
    answer_index: int
    answers: tuple[str, ...]
    """Accepted short answers: the right choice first, then aliases (digits, number words)."""

    @property
    def prompt(self) -> str:
        """What a model is asked for a short answer (through its chat template): the question and the
        instruction to answer in a word."""
        return f"{self.question}\n{INSTRUCTIONS.get(self.lang, INSTRUCTIONS['en'])}"

    @property
    def mc_context(self) -> str:
        """The multiple-choice context, plain text as lm-eval's ``doc_to_text`` in checkable_qa_mc.yaml
        writes it; each choice is scored as the continuation ``" " + choice`` (lm-eval's target delimiter).
        No chat template: short contexts keep the 4 x 254 scored sequences cheap, and the numbers can be
        checked against ``lm_eval --model hf`` on the same YAML."""
        return f"Question: {self.question}\nAnswer:"


def default_tasks_file() -> Path:
    return Path(str(resources.files("compress") / "data" / TASKS_FILE))


def load_tasks(path: str | Path | None = None) -> list[TaskItem]:
    """Read and check a task JSONL file (default: the shipped set); every problem names its line."""
    file = Path(path) if path is not None else default_tasks_file()
    if not file.is_file():
        raise CompressError(f"task file {file} does not exist", "pass an existing JSONL file to --gate-tasks-file")
    items: list[TaskItem] = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            item = TaskItem(
                id=str(raw["id"]),
                lang=str(raw.get("lang", "en")),
                category=str(raw.get("category", "")),
                question=str(raw["question"]),
                choices=tuple(str(c) for c in raw["choices"]),
                answer_index=int(raw["answer_index"]),
                answers=tuple(str(a) for a in raw["answers"]),
            )
            if not 0 <= item.answer_index < len(item.choices) or len(item.choices) < 2 or not item.answers:
                raise ValueError("needs 2+ choices, answer_index among them and 1+ accepted answers")
        except (ValueError, KeyError, TypeError) as exc:
            raise CompressError(
                f"task file {file} line {number} is malformed ({type(exc).__name__}: {exc})",
                "each line is a JSON object with id, question, choices, answer_index and answers",
            ) from None
        items.append(item)
    check_entries(file, [i.id for i in items], kind="task item")
    return items
