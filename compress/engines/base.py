"""Plain data that engines return, and the interface they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Self

from compress.core.fidelity import TokenLogprobs


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
    prompt_token_ids: tuple[int, ...] = ()
    """The chat-templated prompt as the engine tokenized it, and below, the answer's tokens: teacher-forced
    scoring replays exactly this sequence under another model."""
    token_ids: tuple[int, ...] = ()


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


@dataclass(frozen=True)
class ScoreRequest:
    """A token sequence to score teacher-forced: ``context`` is given, each token of ``continuation`` is scored
    against the model's distribution after everything before it."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


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

    def chat_token_ids(self, prompts: list[str]) -> list[tuple[int, ...]]:
        """Each prompt as one user turn through the chat template, tokenized as ``chat()`` does."""
        ...

    def encode(self, text: str, *, special: bool = False) -> tuple[int, ...]:
        """Text to token ids; ``special`` adds the tokenizer's usual BOS/EOS as a plain prompt would have."""
        ...

    def score(self, requests: list[ScoreRequest], top_k: int) -> list[list[TokenLogprobs]]:
        """One forward pass per sequence, no sampling: per continuation token, its logprob and the top-k."""
        ...

    def describe(self) -> dict:
        """Engine name, versions and device, for reports."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


def render_chat(tokenizer: object, prompt: str) -> str:
    """One user turn through the model's chat template, ready for the assistant's answer."""
    return tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )


def render_chat_ids(tokenizer: object, prompt: str) -> tuple[int, ...]:
    """:func:`render_chat`, tokenized without adding special tokens again (the template holds BOS and tags)."""
    return tuple(tokenizer.encode(render_chat(tokenizer, prompt), add_special_tokens=False))  # type: ignore[attr-defined]
