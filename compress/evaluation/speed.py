"""The gate's speed measurement: a fixed-length workload timed in rounds, baseline and candidate paired.

Why not one median per model: on the H200 the same variant's median moved 40 % between calls
(shared/gpu/README.md), so two medians taken minutes apart compare the machine's moods, not the models.
Here both engines are resident and every round times the baseline, then the candidate (the order
alternates), so drift lands on both; the verdict is the median of the per-round ratios. (Two vLLM engines
share a process on CUDA and on the CPU alike.)

The workload is the gate's prompts with ``ignore_eos`` and ``min_tokens = max_tokens``, so every variant
generates exactly the same number of tokens and a time ratio is a speed ratio (answers are checked by the
other gate cases, from a separate untimed batch). ``batch`` repeats the prompts to that many sequences:
decoding at batch 10 can be bound by the host rather than by the model, and a variant's gain (or loss)
only shows where the GPU's work dominates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from statistics import median
from typing import Literal

from compress.engines.base import Engine, SamplingConfig
from compress.evaluation.timing import PairedSpeedup, interleave, paired_speedup

Mode = Literal["interleaved"]


@dataclass(frozen=True)
class SpeedWorkload:
    """What each timed round generates."""

    prompts: list[str]
    sampling: SamplingConfig

    @property
    def tokens(self) -> int:
        return len(self.prompts) * self.sampling.max_tokens

    @classmethod
    def for_gate(cls, prompts: list[str], sampling: SamplingConfig, batch: int | None = None) -> SpeedWorkload:
        """The gate's prompts, cycled to ``batch`` sequences (default: each once), fixed-length output."""
        size = batch or len(prompts)
        if size < 1 or not prompts:
            raise ValueError("the speed workload needs at least one prompt and batch >= 1")
        cycled = [prompts[i % len(prompts)] for i in range(size)]
        fixed = replace(sampling, ignore_eos=True, min_tokens=sampling.max_tokens)
        return cls(prompts=cycled, sampling=fixed)


@dataclass(frozen=True)
class SpeedRounds:
    """Seconds per round for the baseline and the candidate, on the same workload, paired by round."""

    baseline: list[float]
    candidate: list[float]
    tokens: int
    """Output tokens per round (the same for both: fixed-length workload)."""
    batch: int
    warmup: int
    mode: Mode
    dtype: str | None = None
    """The activation dtype both sides ran at (a ratio across dtypes would measure the dtype)."""
    confirmation: SpeedRounds | None = None
    """The same measurement by a second, fresh pair of engines, when the first landed near its floor
    (compress/gate/session.py ``CONFIRM_MARGIN``): engine starts carry a bias that rounds do not average out."""

    @property
    def paired(self) -> PairedSpeedup:
        """This pair's rounds only."""
        return paired_speedup(self.baseline, self.candidate)

    @property
    def pairs(self) -> list[SpeedRounds]:
        """Each independent engine pair's rounds: this one, and its confirmation if any."""
        return [self] if self.confirmation is None else [self, *self.confirmation.pairs]

    @property
    def speedup(self) -> float:
        """The gate's statistic: median over rounds of baseline seconds / candidate seconds (>1 faster);
        with a confirmation, the mean of the pairs' medians."""
        pairs = self.pairs
        return sum(p.paired.paired for p in pairs) / len(pairs)

    def to_dict(self) -> dict:
        own = {k: v for k, v in asdict(self).items() if k != "confirmation"}
        confirmation = None if self.confirmation is None else self.confirmation.to_dict()
        return {**own, "confirmation": confirmation, "speedup": self.speedup, "paired": self.paired.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> SpeedRounds:
        keys = ("baseline", "candidate", "tokens", "batch", "warmup", "mode")
        confirmation = data.get("confirmation")
        return cls(
            **{k: data[k] for k in keys},
            dtype=data.get("dtype"),
            confirmation=None if confirmation is None else cls.from_dict(confirmation),
        )


def interleaved_rounds(
    reference: Engine, candidate: Engine, workload: SpeedWorkload, *, rounds: int, warmup: int
) -> SpeedRounds:
    """Both engines resident: each round times one batch on each, the order rotating round by round.

    Both must run at the same dtype: a 4-bit variant served in bf16 against a float32 baseline looked 1.87x
    faster on the H200 for the dtype alone."""
    if (reference.name, reference.dtype) != (candidate.name, candidate.dtype):
        raise ValueError(
            f"timing {candidate.name} {candidate.dtype} against a {reference.name} {reference.dtype} baseline "
            "measures the engine or the dtype, not the model"
        )
    runners = {
        "baseline": lambda: reference.chat(workload.prompts, workload.sampling).seconds,
        "candidate": lambda: candidate.chat(workload.prompts, workload.sampling).seconds,
    }
    times = interleave(runners, rounds=rounds, warmup=warmup, rotate=True)
    return SpeedRounds(
        baseline=times["baseline"],
        candidate=times["candidate"],
        tokens=workload.tokens,
        batch=len(workload.prompts),
        warmup=warmup,
        mode="interleaved",
        dtype=candidate.dtype,
    )


def describe_rounds(rounds: SpeedRounds, baseline: str, candidate: str) -> list[tuple[str, str]]:
    """Labelled lines for a failure message: each side's rounds, and the per-round ratios."""

    def side(values: list[float]) -> str:
        runs = ", ".join(f"{v:.3f}" for v in values)
        med = median(values)
        return f"median {med:.3f} s, {rounds.tokens / med:.0f} tok/s (rounds {runs} s)"

    ratios = ", ".join(f"{b / c:.2f}" for b, c in zip(rounds.baseline, rounds.candidate, strict=True) if c > 0)
    return [(baseline, side(rounds.baseline)), (candidate, side(rounds.candidate)), ("ratios", ratios)]
