"""The variant to ship: which candidate a gate run names, and how the others rank behind it.

The rule (README, "The variant to ship"):

1. A candidate is *eligible* when it ran, none of its gate cases that ran failed or errored (its speed floor
   included: the gate did not pass it otherwise), and at least one passed. A skipped case does not count
   against it: report-only similarity, a task format the baseline cannot support, speed without CUDA.
2. Where its speed case timed it (a CUDA runner, or ``--gate-speed-on-cpu``), the eligible candidates rank by
   the measured speedup (median of per-round ratios against the baseline), highest first: the first is the
   fastest variant that passes every quality floor.
3. Eligible candidates that were not timed rank after the timed ones, by the bytes of their weights
   (safetensors total), smallest first. On a CPU run nothing is timed, so the gate names the most compressed
   passing variant and says that speed was not measured.
4. Ties go to smaller weights, then lower mean KL, then the name; ineligible candidates follow, ranked the
   same way, each with the cases that failed.

Pure: it reads a report's per-model verdicts (``ModelReport.verdict``, set by the gate) and figures; an
eval-compare report has no verdicts, so it gets no recommendation.
"""

from __future__ import annotations

from compress.reports.json_report import CompareReport, ModelReport, RankedVariant, Recommendation

TIMED = ("passed", "failed")
"""Speed-case outcomes that mean the variant was timed."""


def recommend(report: CompareReport) -> Recommendation | None:
    """The variant to ship and the ranking of every candidate; None when no candidate carries a verdict."""
    candidates = [m for m in report.models.values() if m.role == "candidate" and m.verdict is not None]
    if not candidates:
        return None
    ranked = sorted((_entry(m) for m in candidates), key=_key)
    eligible = [r for r in ranked if r.eligible]
    timed = any(r.speedup is not None for r in eligible)
    rule = "fastest" if timed else "smallest"
    base = report.models.get(report.baseline)
    base_bytes = base.provenance.weights_bytes if base and base.provenance else None
    if not eligible:
        line = f"variant to ship: none: no variant passed every case ({_why_none(ranked)})"
        return Recommendation(variant=None, rule=rule, line=line, ranking=ranked)
    best = eligible[0]
    if best.speedup is not None:
        head = f"the fastest of {len(eligible)} variant(s) that passed every case: speedup {best.speedup:.2f}x"
    else:
        head = (
            f"the smallest of {len(eligible)} variant(s) that passed every case (speed not measured: no speed "
            "case timed a variant in this run; on a CPU the speed cases skip)"
        )
    figures = [_weights(best.weights_bytes, base_bytes), *quality_figures(best), f"{best.cases_passed} case(s) passed"]
    line = f"variant to ship: {best.name}: {head}; " + ", ".join(figures)
    return Recommendation(variant=best.name, rule=rule, line=line, ranking=ranked)


def quality_figures(entry: RankedVariant) -> list[str]:
    return [
        f"mean KL {_num(entry.mean_kl, 4)}",
        f"top-1 {_num(entry.top1_agreement, 3)}",
        f"task recovery {_num(entry.task_recovery, 3)}",
    ]


def _entry(model: ModelReport) -> RankedVariant:
    verdict = model.verdict
    assert verdict is not None
    why = None
    if model.status != "ok":
        why = "did not run"
    elif verdict.failed:
        more = f" (+{len(verdict.failed) - 5} more)" if len(verdict.failed) > 5 else ""
        why = "failed " + ", ".join(verdict.failed[:5]) + more
    elif verdict.passed == 0:
        why = "no case passed (all skipped)"
    elif model.provenance is not None and model.provenance.same_as_base:
        why = "same as base (its build changed no weight)"
    return RankedVariant(
        name=model.name,
        eligible=why is None,
        why_not=why,
        cases_passed=verdict.passed,
        speedup=model.speedup if verdict.speed in TIMED else None,
        weights_bytes=model.provenance.weights_bytes if model.provenance else None,
        mean_kl=model.mean_kl,
        top1_agreement=model.top1_agreement,
        task_recovery=model.task_recovery,
    )


def _key(r: RankedVariant) -> tuple:
    inf = float("inf")
    return (
        not r.eligible,
        r.speedup is None,
        -(r.speedup or 0.0),
        r.weights_bytes if r.weights_bytes is not None else inf,
        r.mean_kl if r.mean_kl is not None else inf,
        r.name,
    )


def _why_none(ranked: list[RankedVariant]) -> str:
    return "; ".join(f"{r.name}: {r.why_not}" for r in ranked[:3]) + ("; ..." if len(ranked) > 3 else "")


def _weights(size: int | None, base: int | None) -> str:
    if size is None:
        return "weights size unknown"
    share = f" ({size / base:.0%} of the baseline's)" if base else ""
    return f"weights {size / 1e6:.1f} MB{share}"


def _num(value: float | None, digits: int) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}"
