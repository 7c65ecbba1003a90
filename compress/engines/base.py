"""Plain data that engines return, and the interface they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Self


@dataclass(frozen=True)
class SamplingConfig:
    """Greedy by default, with ``min_tokens`` so a chat model cannot stop at EOS before saying anything."""

    temperature: float = 0.0
    min_tokens: int = 8
    max_tokens: int = 64
    seed: int = 0
    ignore_eos: bool = False
    """True makes every variant produce exactly ``max_tokens`` tokens (speed benchmarks only)."""


@dataclass(frozen=True)
class Generation:
    """One prompt's answer."""

    prompt: str
    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str | None = None


@dataclass(frozen=True)
class BatchResult:
    """All prompts' answers from one batched call, with that call's wall time (generation only)."""

    generations: list[Generation]
    seconds: float
    metadata: dict = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [g.text for g in self.generations]

    @property
    def output_tokens(self) -> int:
        return sum(g.output_tokens for g in self.generations)


class Engine(Protocol):
    """What the evaluation needs from an engine. Implementations load in ``__init__`` and time it."""

    name: str
    model_dir: str
    dtype: str
    load_seconds: float

    def chat(self, prompts: list[str], sampling: SamplingConfig) -> BatchResult:
        """Apply the chat template to each prompt (one user turn) and generate, all in one batch."""
        ...

    def complete(self, prompts: list[str], sampling: SamplingConfig) -> BatchResult:
        """Generate from the raw prompt text with no chat template (what the old scripts did)."""
        ...

    def describe(self) -> dict:
        """Engine name, versions and device, for reports."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...
