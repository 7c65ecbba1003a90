"""Generation timing: warm-up, repeated timed runs, medians and spread. Load time never enters these figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import median

from compress.engines.base import BatchResult, Engine, SamplingConfig


@dataclass(frozen=True)
class Timing:
    """Wall seconds of each timed batch (after warm-up) and the output tokens of one batch."""

    runs: list[float]
    output_tokens: int

    @property
    def median(self) -> float:
        return median(self.runs)

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def spread(self) -> float:
        """(max - min) / median: how much the repeats disagree, as a fraction."""
        return (max(self.runs) - min(self.runs)) / self.median if self.median > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.median if self.median > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "median": self.median,
            "best": self.best,
            "spread": self.spread,
            "tokens_per_second": self.tokens_per_second,
        }


def measure(
    engine: Engine, prompts: list[str], sampling: SamplingConfig, *, warmup: int = 1, repeats: int = 3
) -> tuple[BatchResult, Timing]:
    """Generate ``warmup`` untimed batches, then ``repeats`` timed ones; return the first timed batch.

    Greedy decoding must give the same text every time: ``metadata["deterministic"]`` says whether it did.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("need repeats >= 1 and warmup >= 0")
    warm = [engine.chat(prompts, sampling) for _ in range(warmup)]
    timed = [engine.chat(prompts, sampling) for _ in range(repeats)]
    first = timed[0]
    deterministic = all(batch.texts == first.texts for batch in warm + timed)
    result = BatchResult(
        generations=first.generations,
        seconds=first.seconds,
        metadata={**first.metadata, "deterministic": deterministic},
    )
    return result, Timing(runs=[batch.seconds for batch in timed], output_tokens=first.output_tokens)


def speedup(baseline: Timing, candidate: Timing) -> float:
    """Elapsed-time speedup of the candidate over the baseline (median generation time, >1 is faster)."""
    return baseline.median / candidate.median if candidate.median > 0 else 0.0


def token_speedup(baseline: Timing, candidate: Timing) -> float:
    """Speedup in output tokens per second: fair when variants stop after different numbers of tokens."""
    if baseline.tokens_per_second <= 0:
        return 0.0
    return candidate.tokens_per_second / baseline.tokens_per_second
