"""The variant to ship: the rule of compress.reports.ranking on synthetic gate reports, and its markdown."""

from __future__ import annotations

import json

import pytest

from compress.core.prompts import Prompt
from compress.engines.base import BatchResult, Generation, SamplingConfig
from compress.evaluation.run import ModelRun
from compress.evaluation.timing import Timing
from compress.gate.report import case_verdicts, with_case_verdicts
from compress.reports.compare import build_report
from compress.reports.json_report import CaseVerdicts, CompareReport, Settings
from compress.reports.table import write_markdown

PROMPTS = [Prompt("hello", "hello"), Prompt("ko", "안녕", "ko")]
SETTINGS = Settings(engine="auto", dtype=None, warmup=0, repeats=1, tensor_parallel_size=1)
MB = 1_000_000
# name: (weights bytes, answer-batch seconds); the baseline's batch takes 1.0 s
SIZES = {"base": (100 * MB, 1.0), "l29": (90 * MB, 0.8), "awq": (30 * MB, 1.2), "l29-awq": (27 * MB, 1.1)}


def _run(name: str) -> ModelRun:
    size, seconds = SIZES[name]
    gens = [Generation(prompt=p.text, text=f"answer {p.id}", prompt_tokens=3, output_tokens=8) for p in PROMPTS]
    return ModelRun(
        name=name, model_dir=f"/m/{name}", result=BatchResult(generations=gens, seconds=seconds),
        timing=Timing(runs=[seconds], output_tokens=16), engine={"engine": "vllm", "dtype": "float32", "device": "cpu"},
        provenance={"weights_sha256": name * 8, "weights_bytes": size, "manifest": name != "awq"},
    )  # fmt: skip


def _report(
    verdicts: dict[str, CaseVerdicts],
    speedups: dict[str, float] | None = None,
    variants: tuple[str, ...] = ("l29", "awq", "l29-awq"),
) -> CompareReport:
    report = build_report(_run("base"), [_run(n) for n in variants], PROMPTS, SamplingConfig(), SETTINGS)
    for name, speedup in (speedups or {}).items():  # what the gate's speed rounds measured
        report.models[name] = report.models[name].model_copy(update={"speedup": speedup})
    for name, kl in (("l29", 0.13), ("awq", 0.12), ("l29-awq", 0.2)):
        if name in report.models:
            report.models[name] = report.models[name].model_copy(update={"mean_kl": kl, "top1_agreement": 0.8})
    return with_case_verdicts(report, verdicts)


def _passed(speed: str = "skipped") -> CaseVerdicts:
    return CaseVerdicts(passed=24, skipped=2, speed=speed)


def test_on_a_cpu_run_the_smallest_passing_variant_is_named_and_speed_is_said_unmeasured() -> None:
    failed = CaseVerdicts(passed=20, failed=["test_fidelity[l29-awq]"], speed="skipped")
    report = _report({"l29": _passed(), "awq": _passed(), "l29-awq": failed})
    rec = report.recommendation
    assert rec is not None and (rec.variant, rec.rule) == ("awq", "smallest")  # l29-awq is smaller but failed
    assert [(r.name, r.eligible) for r in rec.ranking] == [("awq", True), ("l29", True), ("l29-awq", False)]
    assert rec.ranking[2].why_not == "failed test_fidelity[l29-awq]"
    assert all(r.speedup is None for r in rec.ranking)  # the answer batches' ratio is not a speed measurement
    assert rec.line == (
        "variant to ship: awq: the smallest of 2 variant(s) that passed every case (speed not measured: no speed "
        "case timed a variant in this run; on a CPU the speed cases skip); weights 30.0 MB (30% of the "
        "baseline's), mean KL 0.1200, top-1 0.800, task recovery not measured, 24 case(s) passed"
    )


def test_where_speed_was_timed_the_fastest_passing_variant_is_named() -> None:
    slow = CaseVerdicts(passed=25, failed=["test_speedup[awq]"], speed="failed")
    verdicts = {"l29": _passed("passed"), "awq": slow, "l29-awq": _passed("passed")}
    rec = _report(verdicts, {"l29": 1.04, "awq": 0.7, "l29-awq": 1.31}).recommendation
    assert rec is not None and (rec.variant, rec.rule) == ("l29-awq", "fastest")
    assert [(r.name, r.speedup) for r in rec.ranking] == [("l29-awq", 1.31), ("l29", 1.04), ("awq", 0.7)]
    assert rec.line.startswith("variant to ship: l29-awq: the fastest of 2 variant(s) that passed every case: "
                               "speedup 1.31x; weights 27.0 MB (27% of the baseline's), mean KL 0.2000")  # fmt: skip


def test_no_passing_variant_is_said_and_eval_compare_reports_get_no_recommendation() -> None:
    bad = {n: CaseVerdicts(passed=1, failed=[f"test_golden[{n}]"]) for n in ("l29", "awq", "l29-awq")}
    rec = _report(bad).recommendation
    assert rec is not None and rec.variant is None
    assert rec.line.startswith("variant to ship: none: no variant passed every case (")
    skipped_only = _report({"l29": CaseVerdicts(skipped=3)}).recommendation
    assert skipped_only is not None and skipped_only.variant is None  # nothing was judged: nothing to ship
    assert _report({}).recommendation is None


def test_outcomes_of_the_cases_become_verdicts_per_variant() -> None:
    outcomes = [
        ("l29", "test_non_empty[l29-hello]", False, "passed"),
        ("l29", "test_similarity[l29-hello]", False, "skipped"),
        ("l29", "test_speedup[l29]", True, "error"),
        ("l29", "test_golden[l29]", False, "failed"),
        ("awq", "test_speedup[awq]", True, "passed"),
        (None, "test_golden[no-models-dir]", False, "error"),
    ]
    verdicts = case_verdicts(outcomes)
    assert verdicts == {
        "l29": CaseVerdicts(passed=1, skipped=1, failed=["test_speedup[l29]", "test_golden[l29]"], speed="failed"),
        "awq": CaseVerdicts(passed=1, speed="passed"),
    }


def test_the_markdown_report_names_the_variant_and_ranks_the_rest(tmp_path) -> None:
    failed = CaseVerdicts(passed=20, failed=["test_fidelity[l29-awq]"])
    report = _report({"l29": _passed(), "awq": _passed(), "l29-awq": failed})
    text = write_markdown(report, tmp_path / "gate.md").read_text(encoding="utf-8")
    section = text.split("## Variant to ship\n\n", 1)[1].split("\n\n")
    assert section[0] == report.recommendation.line
    assert section[1].startswith("Rule: no speed was measured, so the smallest weights among")
    rows = section[2].splitlines()
    assert rows[0] == ("| rank | variant | passed every case | speedup | weights MB | mean KL | top-1 | "
                       "task recovery |")  # fmt: skip
    assert rows[2] == "| 1 | **awq** | yes | not timed | 30.0 | 0.1200 | 0.800 | – |"
    assert rows[4].startswith("| 3 | l29-awq | no: failed test_fidelity[l29-awq] |")
    assert "no manifest.json: awq (built elsewhere)" in text
    again = CompareReport.model_validate(json.loads(report.model_dump_json()))
    assert again == report and again.models["awq"].provenance.weights_bytes == 30 * MB


@pytest.mark.parametrize("name", ["l29", "base"])
def test_every_model_of_a_report_carries_its_folder_provenance(name: str) -> None:
    model = _report({}).models[name]
    assert model.provenance is not None and model.provenance.weights_sha256 == name * 8


def test_a_merged_report_names_the_variant_to_ship_over_every_runners_variants() -> None:
    from compress.reports.merge import merge_reports

    verdicts = {"l29": _passed(), "awq": _passed(), "l29-awq": _passed()}
    first = _report(verdicts, variants=("l29",))
    second = _report(verdicts, variants=("awq", "l29-awq"))
    assert first.recommendation is not None and first.recommendation.variant == "l29"  # its own runner's only
    merged = merge_reports([("a.json", first), ("b.json", second)])
    assert merged.recommendation is not None and merged.recommendation.variant == "l29-awq"
    assert [r.name for r in merged.recommendation.ranking] == ["l29-awq", "awq", "l29"]


def test_a_copy_of_the_base_is_never_the_variant_to_ship_and_the_table_says_same_as_base(tmp_path) -> None:
    report = _report({"l29": _passed(), "awq": _passed(), "l29-awq": _passed()})
    copy = report.models["l29-awq"].provenance.model_copy(update={"same_as_base": True})  # the smallest
    report.models["l29-awq"] = report.models["l29-awq"].model_copy(update={"provenance": copy})
    report = with_case_verdicts(report, {n: _passed() for n in ("l29", "awq", "l29-awq")})
    rec = report.recommendation
    assert rec is not None and rec.variant == "awq"
    assert rec.ranking[-1].name == "l29-awq" and rec.ranking[-1].why_not == "same as base (its build changed no weight)"
    write_markdown(report, tmp_path / "r.md")
    assert "same as base: l29-awq holds the baseline's weights" in (tmp_path / "r.md").read_text()
