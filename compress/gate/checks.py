"""The gate's assertions. Each failure says what regressed, by how much, against which floor (and where that
floor is set), and shows both sides, labelled and ``repr``-quoted so whitespace and empty strings are visible
(the habit of vLLM's ``check_outputs_equal``). The first line is the summary pytest prints after ``FAILED``.
"""

from __future__ import annotations

from compress.engines import Generation
from compress.evaluation.speed import SpeedRounds, describe_rounds
from compress.gate.thresholds import VariantThresholds
from compress.metrics import OutputComparison, is_non_empty
from compress.prompts import Prompt


class GateFailure(AssertionError):
    """A release criterion was missed."""


def _sides(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows) + 1
    return "\n".join(f"  {label + ':':<{width}} {value}" for label, value in rows)


def check_non_empty(
    *, variant: str, baseline: str, prompt: Prompt, answer: Generation, baseline_answer: str | None
) -> None:
    """The answer has a visible character (whitespace-only counts as empty)."""
    __tracebackhide__ = True  # failures point at the test, not at this helper
    if is_non_empty(answer.text):
        return
    rows = [("prompt", repr(prompt.text)), (variant, repr(answer.text))]
    if baseline_answer is not None and variant != baseline:
        rows.append((baseline, repr(baseline_answer)))
    raise GateFailure(
        f"non-empty: {variant} answered nothing visible to {prompt.id!r} "
        f"({answer.output_tokens} tokens generated, finish reason {answer.finish_reason})\n" + _sides(rows)
    )


def check_similarity(
    *,
    variant: str,
    baseline: str,
    prompt: Prompt,
    answer: str,
    baseline_answer: str,
    similarity: float,
    thresholds: VariantThresholds,
) -> None:
    """One prompt's answer is at least ``min_similarity`` like the baseline's."""
    __tracebackhide__ = True  # failures point at the test, not at this helper
    floor = thresholds.floors.min_similarity
    if similarity >= floor:
        return
    raise GateFailure(
        f"similarity: {similarity:.3f} < min {floor:.3f} (short by {floor - similarity:.3f}) for {variant} "
        f"vs {baseline} on {prompt.id!r}\n"
        + _sides([("prompt", repr(prompt.text)), (variant, repr(answer)), (baseline, repr(baseline_answer))])
        + f"\n  floor from {thresholds.source('min_similarity')}"
    )


def check_variant_metrics(
    *,
    variant: str,
    baseline: str,
    prompt_ids: list[str],
    comparison: OutputComparison,
    thresholds: VariantThresholds,
) -> None:
    """Non-empty rate, average similarity and exact-match rate against their floors; all misses at once."""
    __tracebackhide__ = True  # failures point at the test, not at this helper
    floors = thresholds.floors
    n = len(prompt_ids)
    misses: list[tuple[str, str]] = []
    rate = comparison.non_empty_rate
    if rate < floors.non_empty_rate:
        empty = [pid for pid, ok in zip(prompt_ids, comparison.non_empty, strict=True) if not ok]
        misses.append(
            (
                f"non-empty: {comparison.non_empty_count}/{n} prompts answered "
                f"(rate {rate:.2f} < floor {floors.non_empty_rate:.2f}, "
                f"short by {floors.non_empty_rate - rate:.2f})",
                f"no answer to: {', '.join(empty)}; floor from {thresholds.source('non_empty_rate')}",
            )
        )
    avg = comparison.avg_similarity
    if avg < floors.avg_similarity:
        lowest = sorted(zip(comparison.similarities, prompt_ids, strict=True))[:3]
        misses.append(
            (
                f"avg similarity {avg:.3f} < floor {floors.avg_similarity:.3f} "
                f"(short by {floors.avg_similarity - avg:.3f})",
                f"lowest: {', '.join(f'{pid} {sim:.2f}' for sim, pid in lowest)}; "
                f"floor from {thresholds.source('avg_similarity')}",
            )
        )
    exact = comparison.exact_match
    if exact < floors.exact_match:
        differ = [pid for pid, same in zip(prompt_ids, comparison.exact, strict=True) if not same]
        misses.append(
            (
                f"exact match {sum(comparison.exact)}/{n} = {exact:.2f} < floor {floors.exact_match:.2f} "
                f"(short by {floors.exact_match - exact:.2f})",
                f"differs on: {', '.join(differ)}; floor from {thresholds.source('exact_match')}",
            )
        )
    if not misses:
        return
    raise GateFailure(
        f"{variant} vs {baseline}: "
        + "; ".join(summary for summary, _ in misses)
        + "\n"
        + "\n".join(f"  - {summary}\n    {detail}" for summary, detail in misses)
    )


def check_speedup(
    *,
    variant: str,
    baseline: str,
    rounds: SpeedRounds,
    thresholds: VariantThresholds,
) -> float:
    """The median over rounds of (baseline seconds / variant seconds) is at least ``speedup``.

    Both generate the same fixed-length workload each round (compress/evaluation/speed.py), so the ratio is
    a speed ratio, and the two were timed in turns within each round. Returns the measured speedup.
    """
    __tracebackhide__ = True  # failures point at the test, not at this helper
    floor = thresholds.floors.speedup
    paired = rounds.paired
    measured = paired.paired
    if measured >= floor:
        return measured
    raise GateFailure(
        f"speedup {measured:.2f}x < floor {floor:.2f}x for {variant} vs {baseline} "
        f"(median of {len(rounds.baseline)} per-round ratios, range {paired.rounds.min:.2f}-{paired.rounds.max:.2f}; "
        f"short by {floor - measured:.2f})\n"
        + _sides(describe_rounds(rounds, baseline, variant))
        + f"\n  rounds interleaved with the baseline{_at(rounds.dtype)}, after {rounds.warmup} warm-up; "
        f"{rounds.batch} sequences x {rounds.tokens // max(rounds.batch, 1)} tokens each; model load excluded; "
        f"floor from {thresholds.source('speedup')}"
    )


def _at(dtype: str | None) -> str:
    return f" (both in {dtype})" if dtype else ""
