"""The gate's assertions. Each failure says what regressed, by how much, against which floor (and where that
floor is set), and shows both sides, labelled and ``repr``-quoted so whitespace and empty strings are visible
(the habit of vLLM's ``check_outputs_equal``). The first line is the summary pytest prints after ``FAILED``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from compress.core.accuracy import MAX_RECOVERY_SE, Recovery, above_chance, accuracy, chance_accuracy, recovery
from compress.core.fidelity import FidelitySummary, PromptFidelity, summarize
from compress.core.prompts import Prompt
from compress.core.similarity import OutputComparison, is_non_empty
from compress.core.tasks import TaskItem
from compress.engines import Generation
from compress.evaluation.speed import SpeedRounds, describe_rounds
from compress.evaluation.tasks import TaskResult
from compress.gate.thresholds import VariantThresholds


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
    measured = rounds.speedup
    if measured >= floor:
        return measured
    pairs = rounds.pairs
    if len(pairs) == 1:
        spread = rounds.paired.rounds
        how = f"median of {len(rounds.baseline)} per-round ratios, range {spread.min:.2f}-{spread.max:.2f}"
    else:
        each = ", ".join(f"{p.paired.paired:.2f}x" for p in pairs)
        how = f"mean of {len(pairs)} fresh engine pairs' medians ({each}): the first read near the floor"
    sides = []
    for i, pair in enumerate(pairs, 1):
        suffix = f" (pair {i})" if len(pairs) > 1 else ""
        sides += [(f"{name}{suffix}", line) for name, line in describe_rounds(pair, baseline, variant)]
    raise GateFailure(
        f"speedup {measured:.2f}x < floor {floor:.2f}x for {variant} vs {baseline} ({how}; "
        f"short by {floor - measured:.2f})\n"
        + _sides(sides)
        + f"\n  rounds interleaved with the baseline{_at(rounds.dtype)}, after {rounds.warmup} warm-up; "
        f"{rounds.batch} sequences x {rounds.tokens // max(rounds.batch, 1)} tokens each; model load excluded; "
        f"floor from {thresholds.source('speedup')}"
    )


def _at(dtype: str | None) -> str:
    return f" (both in {dtype})" if dtype else ""


def check_fidelity(
    *,
    variant: str,
    baseline: str,
    prompts: list[PromptFidelity],
    thresholds: VariantThresholds,
    decode: Callable[[int], str] = str,
    top_k: int | None = None,
) -> FidelitySummary:
    """Mean and p99 teacher-forced KL and top-1 agreement over every scored prompt, against their floors; all
    misses at once, with the prompts that moved most and where the variant's greedy choice first left the
    baseline's. Returns the summary."""
    __tracebackhide__ = True  # failures point at the test, not at this helper
    floors = thresholds.floors
    s = summarize(prompts)
    misses: list[str] = []
    if s.mean_kl > floors.max_mean_kl:
        misses.append(
            f"mean KL {s.mean_kl:.4f} > max {floors.max_mean_kl:.4f} (over by {s.mean_kl - floors.max_mean_kl:.4f}, "
            f"SE {s.mean_kl_se:.4f}; floor from {thresholds.source('max_mean_kl')})"
        )
    if s.p99_kl > floors.max_p99_kl:
        misses.append(
            f"p99 KL {s.p99_kl:.3f} > max {floors.max_p99_kl:.3f} (over by {s.p99_kl - floors.max_p99_kl:.3f}; "
            f"floor from {thresholds.source('max_p99_kl')})"
        )
    if s.top1_agreement < floors.min_top1_agreement:
        misses.append(
            f"top-1 agreement {s.top1_agreement:.3f} < min {floors.min_top1_agreement:.3f} "
            f"(short by {floors.min_top1_agreement - s.top1_agreement:.3f}, SE {s.top1_agreement_se:.3f}; "
            f"floor from {thresholds.source('min_top1_agreement')})"
        )
    if not misses:
        return s
    bound = f" (top-{top_k} lower bound)" if s.truncated and top_k else ""
    worst = ", ".join(f"{pid} {kl:.3f}" for pid, kl in s.worst)
    flips = [p for p in prompts if p.divergence is not None][:3]
    lines = [
        f"  over {s.n_prompts} prompts, {s.n_tokens} answer tokens{bound}: "
        f"mean KL {s.mean_kl:.4f} +- {s.mean_kl_se:.4f}, "
        f"median {s.median_kl:.4f}, p90 {s.p90_kl:.3f}, p99 {s.p99_kl:.3f}, max {s.max_kl:.2f}; "
        f"top-1 agreement {s.top1_agreement:.3f}",
        f"  moved most (mean KL per prompt): {worst}",
    ]
    for p in flips:
        d = p.divergence
        assert d is not None
        lines.append(
            f"  {p.prompt_id}: greedy choices part at answer token {d.index}: {baseline} {decode(d.base_token)!r} "
            f"(in {variant}'s top-5: {'yes' if d.base_in_variant_top5 else 'no'}), {variant} "
            f"{decode(d.variant_token)!r} (in {baseline}'s top-5: {'yes' if d.variant_in_base_top5 else 'no'})"
        )
    raise GateFailure(f"fidelity: {variant} vs {baseline}: " + "; ".join(misses) + "\n" + "\n".join(lines))


@dataclass(frozen=True)
class TaskVerdict:
    """One scoring format of the task set: the recovery, or why it says nothing (the base at chance)."""

    label: str
    recovery: Recovery | None
    note: str | None = None


def task_verdicts(base: TaskResult, mine: TaskResult, items: list[TaskItem]) -> list[TaskVerdict]:
    """Multiple choice and short answer. A format is judged only where it can say something: the baseline
    clearly above guessing (accuracy minus two standard errors above chance) and the recovery measured to
    +-MAX_RECOVERY_SE; otherwise the verdict carries the reason instead. A ratio to a chance-level accuracy,
    or one with a wide error, is noise."""
    chance = chance_accuracy([len(i.choices) for i in items])
    verdicts = []
    for label, b, v, floor in (
        ("multiple choice", base.mc_correct, mine.mc_correct, chance),
        ("short answer", base.short_correct, mine.short_correct, 0.0),
    ):
        acc = accuracy(b)
        if not above_chance(b, floor):
            note = (f"{label}: not judged, the baseline's accuracy {acc.acc:.3f} ({acc.correct}/{acc.n}, SE "
                    f"{acc.se:.3f}) is not clearly above chance ({floor:.2f})")  # fmt: skip
            verdicts.append(TaskVerdict(label, None, note + ("; not measured for variants" if not v else "")))
            continue
        if not v:
            note = (f"{label}: not measured for variants, the baseline's accuracy {acc.acc:.3f} ({acc.correct}/"
                    f"{acc.n}) cannot support a recovery to +-{MAX_RECOVERY_SE}")  # fmt: skip
            verdicts.append(TaskVerdict(label, None, note))
            continue
        r = recovery(b, v)
        if r.se > MAX_RECOVERY_SE:
            note = (f"{label}: not judged, recovery {r.ratio:.3f} +- {r.se:.3f} (baseline {acc.correct}/{acc.n} "
                    f"right) is too uncertain to hold to a floor (SE > {MAX_RECOVERY_SE})")  # fmt: skip
            verdicts.append(TaskVerdict(label, None, note))
            continue
        verdicts.append(TaskVerdict(label, r))
    return verdicts


def check_task_accuracy(
    *, variant: str, baseline: str, verdicts: list[TaskVerdict], items: list[TaskItem], mine: TaskResult,
    base: TaskResult, thresholds: VariantThresholds,
) -> None:  # fmt: skip
    """Each judged format's recovery (variant accuracy / baseline accuracy) is at least ``min_task_recovery``."""
    __tracebackhide__ = True  # failures point at the test, not at this helper
    floor = thresholds.floors.min_task_recovery
    misses, details = [], []
    for v in verdicts:
        r = v.recovery
        if r is None or r.ratio >= floor:
            continue
        misses.append(
            f"{v.label}: accuracy {r.variant.acc:.3f} ({r.variant.correct}/{r.variant.n}) vs {baseline} "
            f"{r.base.acc:.3f} ({r.base.correct}/{r.base.n}), recovery {r.ratio:.3f} < min {floor:.3f} "
            f"(short by {floor - r.ratio:.3f}, SE {r.se:.3f})"
        )
        picked = [items[i].choices[c] for i, c in enumerate(mine.choice)]
        answers = mine.answers if v.label == "short answer" else picked
        lost = ", ".join(f"{items[i].id} {answers[i]!r}" for i in r.lost[:4])
        details.append(f"  {v.label}: {len(r.lost)} items lost, {len(r.gained)} gained; lost e.g. {lost}")
    if not misses:
        return
    raise GateFailure(
        f"task accuracy: {variant} vs {baseline}: " + "; ".join(misses) + "\n" + "\n".join(details)
        + f"\n  floor from {thresholds.source('min_task_recovery')}"
    )
