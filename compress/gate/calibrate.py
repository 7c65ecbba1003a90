"""Floors from what a matrix measured: the arithmetic behind ``python -m compress calibrate``.

For each variant and each key the gate checks, the floor is the measured value moved toward failing by a
margin made of measured spread::

    margin = max(K x spread, platform allowance) + run-to-run range
    floor  = value + margin  (max_mean_kl, max_p99_kl)      value - margin  (every other key)

rounded outward (3 significant digits up for KL, 3 decimals down for fractions, 2 for speed) and never
looser than the sanity floors that hold in every gate (thresholds.toml ``[defaults]`` and
``[variants.<variant>]``: a variant that misses one fails whatever is calibrated). ``value`` is the mean over
runs. The spread of each key:

==================  ===============================================  =============================================
key                 value                                            spread (K = 2 unless said)
==================  ===============================================  =============================================
max_mean_kl         mean KL(base || variant) over the answer tokens  SE clustered by prompt (core.fidelity)
max_p99_kl          pooled 99th percentile of that KL                SE by cluster bootstrap over prompts
min_top1_agreement  share of tokens with the same greedy choice      SE clustered by prompt
min_task_recovery   variant / base accuracy, each judged format      paired delta-method SE (core.accuracy)
avg_similarity      mean text similarity over the gate's prompts     sd / sqrt(n)
exact_match         share of answers equal to the baseline's         binomial SE sqrt(p(1-p)/(n-1))
min_similarity      the lowest prompt's similarity                   sd over the prompts (K = 1: one value)
non_empty_rate      share of visible answers                         none: the sanity floor (1.0) holds
speedup             median of per-round ratios (timed runs only)     SE of a median, 1.2533 sd / sqrt(rounds)
==================  ===============================================  =============================================

Platform allowances are what moved between CPU CI and an H200 on the same folders (README, "Quality
verdicts" and "On a GPU"): float32 KL within 2 % (at least 1e-5 nats, so a floor is never 0), top-1 agreement
by 0.0016, 2 of 30 greedy answers (so one prompt's worth, 1/n, for the text keys), and a fresh engine pair's
speed read 10 % low once. The run-to-run range is max - min over the ``--runs`` measurements (0 for one run:
float32 on one machine repeated exactly; see the README).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from compress.core.fidelity import bootstrap_percentile_se, summarize
from compress.core.similarity import compare_outputs
from compress.core.tasks import TaskItem
from compress.evaluation.run import ModelRun
from compress.evaluation.speed import SpeedRounds
from compress.evaluation.timing import round_ratios
from compress.gate.checks import (
    GateFailure,
    check_fidelity,
    check_speedup,
    check_task_accuracy,
    check_variant_metrics,
    task_verdicts,
)
from compress.gate.thresholds import Thresholds, VariantThresholds

K_SE = 2.0
KL_ALLOWANCE = 0.02
KL_MIN_MARGIN = 1e-5
TOP1_ALLOWANCE = 0.002
SPEED_ALLOWANCE = 0.10
MEDIAN_SE = math.sqrt(math.pi / 2)
"""SE of a median = sqrt(pi/2) x SE of a mean, for roughly normal rounds."""
UPPER = frozenset({"max_mean_kl", "max_p99_kl"})
"""Keys whose value must stay at or below the floor; for every other key it must reach it."""
SCALE_KEYS = ("max_mean_kl", "max_p99_kl", "min_top1_agreement", "min_task_recovery")
"""The keys whose loosest calibrated floor becomes the gate's default: the model's scale of quality, which a
variant added later without recalibrating is held to (text tripwires and speed stay per variant)."""

Runs = dict[str, ModelRun]


@dataclass(frozen=True)
class Measured:
    """One key of one variant as measured, one value per run, with the spread its margin is made of."""

    key: str
    values: tuple[float, ...]
    spread: float
    """The first run's sampling spread (an SE, or for min_similarity the sd of one prompt's value)."""
    spread_label: str
    allowance: float
    allowance_label: str
    k: float = K_SE
    label: str = ""
    """Which part of the key this is, where one key has several (the task formats)."""

    @property
    def value(self) -> float:
        return statistics.fmean(self.values)

    @property
    def run_range(self) -> float:
        return max(self.values) - min(self.values)

    @property
    def worst(self) -> float:
        return max(self.values) if self.key in UPPER else min(self.values)


@dataclass(frozen=True)
class Floor:
    """A calibrated floor: the value written, how it was reached, and the sanity floor it may not loosen."""

    variant: str
    key: str
    measured: Measured
    floor: float
    margin: float
    source: str
    sanity: float
    sanity_source: str

    @property
    def fails_sanity(self) -> bool:
        """The measured value itself misses the sanity floor: no calibration makes this variant pass."""
        worst = self.measured.worst
        return worst > self.sanity if self.key in UPPER else worst < self.sanity


@dataclass(frozen=True)
class VariantCalibration:
    variant: str
    floors: dict[str, Floor]
    notes: dict[str, str]
    """Keys the gate has but this variant could not calibrate, with the reason (e.g. tasks at chance)."""


def _decimal(x: float) -> Decimal:
    """12 significant digits: 0.1 + 0.008 is 0.108, not 0.10800000000000001 rounded up to 0.109."""
    return Decimal(f"{x:.12g}")


def ceil_significant(x: float, digits: int = 3) -> float:
    if not math.isfinite(x) or x <= 0:
        return x
    d = _decimal(x)
    return float(d.quantize(Decimal(1).scaleb(d.adjusted() - digits + 1), rounding=ROUND_CEILING))


def floor_places(x: float, places: int = 3) -> float:
    if not math.isfinite(x):
        return x
    return float(_decimal(x).quantize(Decimal(1).scaleb(-places), rounding=ROUND_FLOOR))


def calibrate_key(variant: str, m: Measured, sanity: VariantThresholds) -> Floor:
    """One floor from one measurement (the module docstring's rule)."""
    upper = m.key in UPPER
    sampled = m.k * m.spread
    margin = max(sampled, m.allowance) + m.run_range
    if m.k == 0 and m.allowance == 0:
        source = "no margin"
    elif sampled >= m.allowance:
        source = f"{m.k:g} {'SE' if 'SE' in m.spread_label else 'sd'}"
    else:
        source = m.allowance_label
    if m.run_range > 0:
        source += f" + run-to-run range {m.run_range:.3g}"
    if upper:
        raw = ceil_significant(m.value + margin)
    else:
        raw = max(0.0, floor_places(m.value - margin, 2 if m.key == "speedup" else 3))
        if m.key == "speedup":
            raw = max(raw, 0.01)  # the gate requires a positive speedup floor
    limit = getattr(sanity.floors, m.key)
    looser = raw > limit if upper else raw < limit
    if looser:
        source = f"sanity floor {sanity.source(m.key)} ({raw:g} would be looser)"
    return Floor(
        variant=variant, key=m.key, measured=m, floor=limit if looser else raw, margin=margin, source=source,
        sanity=limit, sanity_source=sanity.source(m.key),
    )  # fmt: skip


def measure_text(variant: str, runs: Sequence[Runs], baseline: str) -> list[Measured]:
    """non_empty_rate, avg_similarity, exact_match and min_similarity on the gate's prompts."""
    comps = [compare_outputs(r[baseline].texts, r[variant].texts) for r in runs]
    sims = comps[0].similarities
    n = len(sims)
    one = f"one of the {n} gate prompts (1/n)"
    sd = statistics.stdev(sims) if n > 1 else 0.0
    p = comps[0].exact_match
    return [
        Measured("non_empty_rate", tuple(c.non_empty_rate for c in comps), 0.0, "a count", 0.0, "none", k=0),
        Measured("avg_similarity", tuple(c.avg_similarity for c in comps), sd / math.sqrt(n), f"SE over {n} prompts",
                 1.0 / n, one),
        Measured("exact_match", tuple(c.exact_match for c in comps),
                 math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else 0.0, f"binomial SE over {n} prompts", 1.0 / n, one),
        Measured("min_similarity", tuple(min(c.similarities) for c in comps), sd, f"sd over {n} prompts", 1.0 / n,
                 one, k=1.0),
    ]  # fmt: skip


def measure_fidelity(variant: str, runs: Sequence[Runs]) -> tuple[list[Measured], str | None]:
    """Mean and p99 KL and top-1 agreement over every fidelity set the gate scored; or why not."""
    prompts_per_run = []
    for r in runs:
        q = r[variant].quality
        if q is None or q.error or not q.fidelity:
            return [], f"fidelity not measured ({q.error if q and q.error else 'no fidelity in the run'})"
        prompts_per_run.append([p for scored in q.fidelity.values() for p in scored])
    sums = [summarize(p) for p in prompts_per_run]
    s = sums[0]
    where = f"{s.n_prompts} prompts"
    kl_allowance = max(KL_ALLOWANCE * s.mean_kl, KL_MIN_MARGIN)
    p99_allowance = max(KL_ALLOWANCE * s.p99_kl, KL_MIN_MARGIN)
    platform = f"platform {KL_ALLOWANCE:.0%} (CPU vs H200 float32)"
    return [
        Measured("max_mean_kl", tuple(x.mean_kl for x in sums), s.mean_kl_se, f"clustered SE over {where}",
                 kl_allowance, platform),
        Measured("max_p99_kl", tuple(x.p99_kl for x in sums), bootstrap_percentile_se(prompts_per_run[0]),
                 f"bootstrap SE over {where}", p99_allowance, platform),
        Measured("min_top1_agreement", tuple(x.top1_agreement for x in sums), s.top1_agreement_se,
                 f"clustered SE over {where}", TOP1_ALLOWANCE, f"platform {TOP1_ALLOWANCE} (CPU vs H200)"),
    ], None  # fmt: skip


def measure_tasks(
    variant: str, runs: Sequence[Runs], baseline: str, items: list[TaskItem]
) -> tuple[list[Measured], str | None]:
    """Recovery in each format the gate judges (one Measured per format); or why none is judged."""
    per_run = []
    for r in runs:
        bq, q = r[baseline].quality, r[variant].quality
        if bq is None or bq.tasks is None or q is None or q.error:
            return [], "task accuracy not measured"
        per_run.append(task_verdicts(bq.tasks, q.tasks or bq.tasks, items))
    judged = [v for v in per_run[0] if v.recovery is not None]
    if not judged:
        return [], "; ".join(v.note or "" for v in per_run[0])
    out = []
    for v in judged:
        values = tuple(next(x.recovery.ratio for x in run if x.label == v.label and x.recovery) for run in per_run)
        out.append(Measured("min_task_recovery", values, v.recovery.se, f"paired SE over {v.recovery.base.n} items",
                            0.0, "none", label=v.label))  # fmt: skip
    return out, None


def measure_speed(variant: str, runs: Sequence[Runs]) -> list[Measured]:
    """The speed case's statistic, where every run timed it (CUDA runners)."""
    rounds = [r[variant].speed for r in runs]
    if not all(isinstance(x, SpeedRounds) for x in rounds):
        return []
    ratios = round_ratios(rounds[0].baseline, rounds[0].candidate)
    n = len(ratios)
    se = MEDIAN_SE * statistics.stdev(ratios) / math.sqrt(n) if n > 1 else 0.0
    value = rounds[0].speedup
    fresh = f"{SPEED_ALLOWANCE:.0%}: a fresh engine pair read 10 % low (H200)"
    return [Measured("speedup", tuple(x.speedup for x in rounds), se, f"SE of the median of {n} rounds",
                     SPEED_ALLOWANCE * value, fresh)]  # fmt: skip


def calibrate_variant(
    variant: str, runs: Sequence[Runs], *, baseline: str, items: list[TaskItem], sanity: VariantThresholds
) -> VariantCalibration:
    """Every key the gate checks for ``variant``, from one or more runs of the same matrix."""
    notes: dict[str, str] = {}
    measured = measure_text(variant, runs, baseline)
    fidelity, why = measure_fidelity(variant, runs)
    measured += fidelity
    if why:
        notes.update(dict.fromkeys(("max_mean_kl", "max_p99_kl", "min_top1_agreement"), why))
    tasks, why = measure_tasks(variant, runs, baseline, items)
    if why:
        notes["min_task_recovery"] = why
    speed = measure_speed(variant, runs)
    if not speed:
        notes["speedup"] = "not timed in this run (speed cases run on CUDA runners only)"
    floors = {m.key: calibrate_key(variant, m, sanity) for m in measured + speed}
    if tasks:  # one floor holds for every judged format: the lowest of theirs
        floors["min_task_recovery"] = min((calibrate_key(variant, m, sanity) for m in tasks), key=lambda f: f.floor)
    return VariantCalibration(variant, floors, notes)


def gate_defaults(calibrations: Sequence[VariantCalibration]) -> dict[str, Floor]:
    """Per :data:`SCALE_KEYS`, the loosest floor any calibrated variant got."""
    out: dict[str, Floor] = {}
    for key in SCALE_KEYS:
        found = [c.floors[key] for c in calibrations if key in c.floors]
        if found:
            out[key] = (max if key in UPPER else min)(found, key=lambda f: f.floor)
    return out


def _miss(check, **kwargs) -> str | None:
    """The first line of a check's failure, or None when it passes."""
    try:
        check(**kwargs)
    except GateFailure as failure:
        return str(failure).splitlines()[0]
    return None


def failures_under(
    runs: Runs, *, gate: str, baseline: str, variants: Sequence[str], thresholds: Thresholds, items: list[TaskItem],
    prompt_ids: list[str],
) -> dict[str, list[str]]:  # fmt: skip
    """The gate's own checks on the measured runs under ``thresholds``: per variant, the first line of each
    failure (empty when it passes). Calibration runs it on the floors it is about to write."""
    out: dict[str, list[str]] = {}
    base = runs[baseline]
    for v in variants:
        run, th = runs[v], thresholds.for_variant(gate, v)
        common = {"variant": v, "baseline": baseline, "thresholds": th}
        comparison = compare_outputs(base.texts, run.texts)
        misses = [_miss(check_variant_metrics, prompt_ids=prompt_ids, comparison=comparison, **common)]
        q, bq = run.quality, base.quality
        if q is not None and not q.error and q.fidelity:
            prompts = [p for scored in q.fidelity.values() for p in scored]
            misses.append(_miss(check_fidelity, prompts=prompts, **common))
        if q is not None and not q.error and bq is not None and bq.tasks is not None:
            verdicts = task_verdicts(bq.tasks, q.tasks or bq.tasks, items)
            misses.append(_miss(check_task_accuracy, verdicts=verdicts, items=items, mine=q.tasks, base=bq.tasks,
                                **common))  # fmt: skip
        if isinstance(run.speed, SpeedRounds):
            misses.append(_miss(check_speedup, rounds=run.speed, **common))
        out[v] = [m for m in misses if m]
    return out
