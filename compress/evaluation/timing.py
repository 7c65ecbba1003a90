"""Generation timing: warm-up, repeated timed runs, medians and spread. Load time never enters these figures."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
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


# --- Interleaved measurement: several ready engines timed round by round -------------------------------------
# On the H200 the same variant's median moved 40 % between calls (shared/gpu/README.md). Timing variant A's
# repeats, then B's, lets such drift land on one variant only; timing A, B, C in every round spreads it over
# all of them, and a ratio taken within one round cancels most of it.


@dataclass(frozen=True)
class Spread:
    """Summary of repeated timings: the median, the best, and how far the repeats spread (IQR and range)."""

    n: int
    median: float
    min: float
    max: float
    q1: float
    q3: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def to_dict(self) -> dict:
        return {**asdict(self), "iqr": self.iqr}


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), so small samples need no numpy."""
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> Spread:
    """Median, min/max and quartiles of ``values`` (at least one)."""
    if not values:
        raise ValueError("summarize needs at least one value")
    ordered = sorted(values)
    return Spread(
        n=len(ordered),
        median=median(ordered),
        min=ordered[0],
        max=ordered[-1],
        q1=_quantile(ordered, 0.25),
        q3=_quantile(ordered, 0.75),
    )


def interleave(
    runners: Mapping[str, Callable[[], float]],
    *,
    rounds: int,
    warmup: int = 0,
    rotate: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, list[float]]:
    """Call every runner once per round, in turn, and collect the seconds each returns.

    A runner does its work and returns the seconds to count (so load time or set-up stays outside).
    ``warmup`` whole rounds run first and are dropped. ``rotate`` starts each round one runner later
    (A B C, B C A, ...) so that no runner is always first after a pause. ``progress(name, round)`` is
    called after each call (round < 0 during warm-up).
    """
    if rounds < 1 or warmup < 0:
        raise ValueError("need rounds >= 1 and warmup >= 0")
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(-warmup, rounds):
        shift = (r % len(names)) if rotate and names else 0
        for name in names[shift:] + names[:shift]:
            seconds = float(runners[name]())
            if r >= 0:
                times[name].append(seconds)
            if progress is not None:
                progress(name, r)
    return times


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """Wrap a callable so it returns its own wall seconds (for :func:`interleave`)."""

    def run() -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    return run


def round_ratios(baseline: Sequence[float], candidate: Sequence[float]) -> list[float]:
    """Per-round speedups baseline/candidate (>1: candidate faster), pairing the i-th runs of each."""
    if len(baseline) != len(candidate):
        raise ValueError(f"cannot pair {len(baseline)} baseline runs with {len(candidate)} candidate runs")
    return [b / c if c > 0 else 0.0 for b, c in zip(baseline, candidate, strict=True)]


@dataclass(frozen=True)
class PairedSpeedup:
    """A candidate's speedup over the baseline two ways: ratio of the medians, and median of the per-round
    ratios (drift within a round cancels). ``rounds`` summarises the per-round ratios."""

    of_medians: float
    paired: float
    rounds: Spread

    def to_dict(self) -> dict:
        return {"of_medians": self.of_medians, "paired": self.paired, "rounds": self.rounds.to_dict()}


def paired_speedup(baseline: Sequence[float], candidate: Sequence[float]) -> PairedSpeedup:
    """Speedup of ``candidate`` over ``baseline`` from runs taken in the same interleaved rounds."""
    ratios = round_ratios(baseline, candidate)
    if not ratios:
        raise ValueError("paired_speedup needs at least one round")
    cand = median(candidate)
    return PairedSpeedup(
        of_medians=median(baseline) / cand if cand > 0 else 0.0,
        paired=median(ratios),
        rounds=summarize(ratios),
    )
