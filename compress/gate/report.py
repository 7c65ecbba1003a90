"""The gate run's report: the eval-compare report (JSON, markdown table, plot) of the variants that ran.

The schema and writers are eval-compare's (compress.reports, compress.reports.compare.build_report), so a
gate report and an eval-compare report read the same way; the pass/fail verdicts are in the JUnit XML.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from compress.core.atomicio import atomic_file
from compress.evaluation.run import ModelRun, run_to_dict
from compress.evaluation.speed import SpeedRounds
from compress.gate.options import GateSetup
from compress.reports import write_compare_reports
from compress.reports.compare import build_report
from compress.reports.json_report import CaseVerdicts, CompareReport, Settings
from compress.reports.ranking import recommend

NOT_RUN = "not run in this gate session (no selected case needed it)"


def write_gate_report(
    setup: GateSetup,
    runs: dict[str, ModelRun],
    *,
    warmup: int,
    repeats: int,
    verdicts: dict[str, CaseVerdicts] | None = None,
) -> tuple[Path, CompareReport]:
    """Write ``setup.config.report_file`` and its .md/.png companions; the baseline first, then the
    candidates in gate order. A baseline that did not run is listed as failed with the reason. With the
    cases' ``verdicts`` the report names the variant to ship (compress.reports.ranking)."""
    cfg = setup.config
    assert cfg is not None
    baseline = runs.get(cfg.baseline) or ModelRun(
        name=cfg.baseline, model_dir=str(cfg.folder(cfg.baseline)), status="failed", error=NOT_RUN
    )
    candidates = [runs[v] for v in cfg.variants if v in runs]
    settings = Settings(
        engine=cfg.engine,
        dtype=cfg.dtype or baseline.engine.get("dtype"),  # on CUDA the session's serving dtype
        warmup=warmup,
        repeats=repeats,
        tensor_parallel_size=cfg.tensor_parallel_size,
    )
    report = with_speed_verdicts(build_report(baseline, candidates, setup.prompts, cfg.sampling, settings), runs)
    report = with_case_verdicts(report, verdicts or {})
    cfg.report_file.parent.mkdir(parents=True, exist_ok=True)
    written = write_compare_reports(report, cfg.report_file)["json"]
    with atomic_file(runs_file_for(cfg.report_file)) as handle:  # every run as data, for tools/h200 and merges
        handle.write(json.dumps({name: run_to_dict(run) for name, run in runs.items()}, indent=1) + "\n")
    speed = {run.name: run.speed.to_dict() for run in candidates if isinstance(run.speed, SpeedRounds)}
    if speed:  # every timed round of the speed verdicts, baseline and candidate side by side
        with atomic_file(speed_file_for(cfg.report_file)) as handle:
            handle.write(json.dumps(speed, indent=1) + "\n")
    return written, report


def case_verdicts(outcomes: Iterable[tuple[str | None, str, bool, str]]) -> dict[str, CaseVerdicts]:
    """Per variant: how its gate cases ended, from ``(variant, case id, timed, state)`` tuples (the plugin
    collects them from the reports; state is passed, failed, error or skipped)."""
    found: dict[str, dict] = {}
    for variant, case, timed, state in outcomes:
        if variant is None:
            continue
        v = found.setdefault(variant, {"passed": 0, "skipped": 0, "failed": [], "speed": "not run"})
        if state in ("failed", "error"):
            v["failed"].append(case)
        else:
            v[state] += 1
        if timed:
            v["speed"] = "failed" if state == "error" else state
    return {name: CaseVerdicts(**v) for name, v in found.items()}


def with_case_verdicts(report: CompareReport, verdicts: dict[str, CaseVerdicts]) -> CompareReport:
    """The report with each model's case outcomes and, from them, the variant to ship."""
    for name, verdict in verdicts.items():
        if name in report.models:
            report.models[name] = report.models[name].model_copy(update={"verdict": verdict})
    report.recommendation = recommend(report)
    return report


def with_speed_verdicts(report: CompareReport, runs: dict[str, ModelRun]) -> CompareReport:
    """Where speed rounds ran, a candidate's speedup is the speed case's: the median of its per-round ratios
    against the baseline at its own dtype. eval-compare's ratio of the two runs' medians would set a bf16
    4-bit variant against the float32 baseline (the H200 said 1.87x for the dtype alone)."""
    for name, model in report.models.items():
        rounds = runs[name].speed if name in runs else None
        if model.role == "candidate" and isinstance(rounds, SpeedRounds):
            update = {"speedup": rounds.speedup, "token_speedup": rounds.speedup, "comparable": True}
            report.models[name] = model.model_copy(update=update)
    return report


def runs_file_for(report_file: Path) -> Path:
    """reports/gate/tiny-exaone4.json -> reports/gate/tiny-exaone4-runs.json (compress.evaluation.run.run_to_dict)"""
    return report_file.with_name(f"{report_file.stem}-runs.json")


def speed_file_for(report_file: Path) -> Path:
    """reports/gate/tiny-exaone4.json -> reports/gate/tiny-exaone4-speed.json"""
    return report_file.with_name(f"{report_file.stem}-speed.json")
