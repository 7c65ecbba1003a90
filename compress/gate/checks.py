"""The gate's assertions. Each failure says what regressed, by how much, against which floor (and where that
floor is set), and shows both sides, labelled and ``repr``-quoted so whitespace and empty strings are visible
(the habit of vLLM's ``check_outputs_equal``). The first line is the summary pytest prints after ``FAILED``.
"""

from __future__ import annotations

from compress.engines import Generation
from compress.evaluation.timing import Timing, token_speedup
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


def describe_timing(timing: Timing) -> str:
    runs = ", ".join(f"{r:.3f}" for r in timing.runs)
    return (
        f"median {timing.median:.3f} s ±{timing.spread / 2:.0%} (runs {runs} s), "
        f"{timing.output_tokens} tokens, {timing.tokens_per_second:.1f} tok/s"
    )


def check_speedup(
    *,
    variant: str,
    baseline: str,
    baseline_timing: Timing,
    timing: Timing,
    warmup: int,
    thresholds: VariantThresholds,
) -> float:
    """Token-normalised speedup (output tokens per second over the baseline's) at least ``speedup``.

    Returns the measured speedup. ``±`` is half the range of the timed runs, relative to their median.
    """
    __tracebackhide__ = True  # failures point at the test, not at this helper
    floor = thresholds.floors.speedup
    measured = token_speedup(baseline_timing, timing)
    if measured >= floor:
        return measured
    raise GateFailure(
        f"speedup {measured:.2f}x < floor {floor:.2f}x for {variant} vs {baseline} "
        f"(baseline median {baseline_timing.median:.2f} s ±{baseline_timing.spread / 2:.0%}, "
        f"candidate {timing.median:.2f} s ±{timing.spread / 2:.0%}; token-normalised)\n"
        + _sides([(baseline, describe_timing(baseline_timing)), (variant, describe_timing(timing))])
        + f"\n  {len(timing.runs)} timed batches after {warmup} warm-up, model load excluded; "
        f"floor from {thresholds.source('speedup')}"
    )
