"""Teacher-forced fidelity through the engines: the baseline's own greedy answers, scored under each variant.

The baseline answers a prompt set once (greedy, the gate's sampling) and scores its own sequences, which gives
its next-token distribution at every answer token (:class:`Reference`). Each variant then scores the same
token sequences; :func:`compress.core.fidelity.score_prompt` compares the two position by position (KL, top-1
agreement, the first greedy divergence). Through vLLM the distributions are its ``prompt_logprobs`` top-k
(a lower bound on KL); :func:`exact_fidelity` computes the full-vocabulary KL with two HF models, which is
how the README's truncation error was measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from compress.core.fidelity import Divergence, PromptFidelity, TokenLogprobs, score_prompt
from compress.engines.base import Engine, Generation, ScoreRequest
from compress.engines.hf_engine import top_positions

TOP_K = 20
"""Distribution entries kept per position (vLLM's default ``max_logprobs``)."""


@dataclass(frozen=True)
class Reference:
    """One prompt set's baseline side: the sequences to replay and the baseline's distributions along them."""

    prompt_ids: tuple[str, ...]
    requests: tuple[ScoreRequest, ...]
    positions: tuple[tuple[TokenLogprobs, ...], ...]

    def to_dict(self) -> dict:
        return {
            "prompt_ids": list(self.prompt_ids),
            "requests": [[list(r.context), list(r.continuation)] for r in self.requests],
            "positions": [[[p.target, p.target_logprob, list(p.top.items())] for p in seq] for seq in self.positions],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Reference:
        return cls(
            prompt_ids=tuple(data["prompt_ids"]),
            requests=tuple(ScoreRequest(tuple(c), tuple(n)) for c, n in data["requests"]),
            positions=tuple(
                tuple(TokenLogprobs(int(t), float(lp), {int(k): float(v) for k, v in top}) for t, lp, top in seq)
                for seq in data["positions"]
            ),
        )


def requests_from_answers(generations: list[Generation]) -> tuple[ScoreRequest, ...]:
    """The baseline's answers as sequences to replay: its chat-templated prompt, then its answer's tokens."""
    missing = [g.prompt for g in generations if not g.prompt_token_ids]
    if missing:
        raise ValueError(f"the engine kept no token ids for {len(missing)} answers (e.g. {missing[0]!r})")
    return tuple(ScoreRequest(g.prompt_token_ids, g.token_ids) for g in generations)


def make_reference(
    engine: Engine, prompt_ids: list[str], generations: list[Generation], top_k: int = TOP_K
) -> Reference:
    """The baseline scores its own answers (the same engine and kernels as a variant will use)."""
    requests = requests_from_answers(generations)
    positions = engine.score(list(requests), top_k)
    return Reference(tuple(prompt_ids), requests, tuple(tuple(p) for p in positions))


def score_variant(engine: Engine, reference: Reference, top_k: int = TOP_K) -> list[PromptFidelity]:
    """The variant scores the baseline's sequences; one :class:`PromptFidelity` per prompt."""
    positions = engine.score(list(reference.requests), top_k)
    return [
        score_prompt(pid, base, mine)
        for pid, base, mine in zip(reference.prompt_ids, reference.positions, positions, strict=True)
    ]


def exact_fidelity(base: object, variant: object, reference: Reference) -> list[PromptFidelity]:
    """Full-vocabulary KL(base || variant) per position, both models in HF (``HfEngine.full_logprobs``);
    top-1 agreement and divergences as :func:`score_variant` gives them."""
    results = []
    for pid, request in zip(reference.prompt_ids, reference.requests, strict=True):
        lb = base.full_logprobs(request)  # type: ignore[attr-defined]
        lv = variant.full_logprobs(request)  # type: ignore[attr-defined]
        kl = (lb.exp() * (lb - lv)).sum(-1).clamp_min(0.0).tolist()
        approx = score_prompt(pid, top_positions(lb, request, 5), top_positions(lv, request, 5))
        results.append(replace(approx, kl=tuple(kl), truncated=False))
    return results


def prompt_fidelity_to_dict(item: PromptFidelity) -> dict:
    return asdict(item)


def prompt_fidelity_from_dict(data: dict) -> PromptFidelity:
    div = data.get("divergence")
    return PromptFidelity(
        prompt_id=data["prompt_id"],
        kl=tuple(data["kl"]),
        top1_agree=tuple(data["top1_agree"]),
        divergence=Divergence(**div) if div else None,
        truncated=bool(data["truncated"]),
    )
