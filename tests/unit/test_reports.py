"""Report schema, markdown table and plot, built from synthetic runs (no engine: runs in a second)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from compress.core.atomicio import atomic_file, check_writable_file
from compress.core.errors import CompressError
from compress.core.prompts import Prompt
from compress.engines.base import BatchResult, Generation, SamplingConfig
from compress.evaluation.compare import name_models
from compress.evaluation.run import ModelRun
from compress.evaluation.timing import Timing
from compress.reports import CompareReport, companion_paths, markdown_table, write_compare_reports
from compress.reports.compare import build_report
from compress.reports.json_report import Settings, write_json
from compress.reports.plot import plot_tradeoff

PROMPTS = [
    Prompt("hello", "hello"),
    Prompt("capital", "What is the capital of France?"),
    Prompt("ko", "안녕", "ko"),
]
BASE_TEXTS = ["Hello! How can I help?", "Paris.", "안녕하세요!"]
# Fields of the old 08_eval_compare.py report: users' scripts read them by these names.
OLD_FIELDS = {
    "elapsed",
    "speedup",
    "avg_similarity",
    "exact_match",
    "non_empty_count",
    "non_empty_rate",
    "outputs",
}
NEW_FIELDS = {
    "load_seconds",
    "output_tokens",
    "tokens_per_second",
    "token_speedup",
    "timing",
    "engine",
    "status",
}
VLLM = {
    "engine": "vllm",
    "dtype": "float32",
    "device": "cpu",
    "versions": {"vllm": "0.32.0", "torch": "2.13.0"},
}
HF = {**VLLM, "engine": "hf"}
SETTINGS = Settings(engine="auto", dtype=None, warmup=1, repeats=3, tensor_parallel_size=1)


def make_run(
    name: str, texts: list[str], runs: list[float], *, engine: dict = VLLM, tokens_each: int = 10
) -> ModelRun:
    gens = [
        Generation(prompt=p.text, text=t, prompt_tokens=5, output_tokens=tokens_each)
        for p, t in zip(PROMPTS, texts, strict=True)
    ]
    return ModelRun(
        name=name,
        model_dir=f"/models/{name}",
        load_seconds=4.5,
        result=BatchResult(generations=gens, seconds=runs[0], metadata={"deterministic": True}),
        timing=Timing(runs=runs, output_tokens=tokens_each * len(texts)),
        engine=engine,
    )


def failed_run(name: str) -> ModelRun:
    return ModelRun(
        name=name, model_dir=f"/models/{name}", status="failed", error="model folder /x does not exist."
    )


@pytest.fixture
def report() -> CompareReport:
    base = make_run("base", BASE_TEXTS, [2.0, 2.2, 1.9])  # median 2.0 s, 30 tokens
    same = make_run("copy", BASE_TEXTS, [1.0, 1.1, 0.9])  # median 1.0 s
    pruned = make_run(
        "compressed-l29", ["Hello! How can I assist?", "Paris.", ""], [1.6, 1.6, 1.6], tokens_each=8
    )
    awq = make_run("base-llmc-awq", ["Hi there", "Lyon", "안녕"], [8.0, 8.0, 8.0], engine=HF)
    return build_report(base, [same, pruned, awq, failed_run("broken")], PROMPTS, SamplingConfig(), SETTINGS)


def test_report_keeps_old_field_names_and_adds_new_ones(report: CompareReport) -> None:
    data = json.loads(report.model_dump_json())
    assert set(data) >= {"created", "baseline", "prompts", "sampling", "settings", "host", "models"}
    assert data["sampling"] == {
        "temperature": 0.0,
        "min_tokens": 8,
        "max_tokens": 64,
        "seed": 0,
        "ignore_eos": False,
    }
    assert list(data["models"]) == ["base", "copy", "compressed-l29", "base-llmc-awq", "broken"]
    for model in data["models"].values():
        assert set(model) >= OLD_FIELDS | NEW_FIELDS | {"error", "deterministic"}
    out = data["models"]["compressed-l29"]["outputs"][0]
    assert set(out) >= {"id", "prompt", "output", "similarity", "exact", "non_empty", "output_tokens"}
    assert set(data["models"]["base"]["timing"]) >= {"runs", "median", "best", "spread", "warmup", "repeats"}
    assert set(data["models"]["base"]["engine"]) == {"engine", "dtype", "device", "versions"}
    assert CompareReport.model_validate(data) == report  # what we write, we can read back


def test_report_figures(report: CompareReport) -> None:
    m = report.models
    assert m["base"].role == "baseline" and m["base"].speedup == 1.0 and m["base"].avg_similarity == 1.0
    assert m["copy"].exact_match == 1.0 and m["copy"].speedup == pytest.approx(2.0)
    pruned = m["compressed-l29"]
    assert pruned.elapsed == 1.6
    assert pruned.speedup == pytest.approx(2.0 / 1.6)
    # base: 30 tokens / 2.0 s = 15 tok/s; pruned: 24 tokens / 1.6 s = 15 tok/s
    assert pruned.tokens_per_second == pytest.approx(15.0)
    assert pruned.token_speedup == pytest.approx(1.0)
    assert pruned.exact_match == pytest.approx(1 / 3)
    assert pruned.non_empty_count == 2 and pruned.non_empty_rate == pytest.approx(2 / 3)
    assert [o.non_empty for o in pruned.outputs] == [True, True, False]
    assert [o.exact for o in pruned.outputs] == [False, True, False]
    assert pruned.outputs[2].similarity == 0.0
    assert pruned.timing is not None and pruned.timing.spread == 0.0 and pruned.timing.repeats == 3
    assert pruned.comparable is True


def test_other_engine_is_not_comparable(report: CompareReport) -> None:
    assert report.models["base-llmc-awq"].comparable is False
    assert report.models["base-llmc-awq"].speedup == pytest.approx(0.25)  # still recorded, marked n/c


def test_failed_model_is_reported_with_its_error(report: CompareReport) -> None:
    broken = report.models["broken"]
    assert broken.status == "failed" and "does not exist" in (broken.error or "")
    assert broken.elapsed is None and broken.speedup is None and broken.avg_similarity is None
    assert broken.outputs == []


def test_failed_baseline_leaves_candidates_measured_but_uncompared() -> None:
    cand = make_run("c", ["x", "", "z"], [1.0])
    rep = build_report(failed_run("base"), [cand], PROMPTS, SamplingConfig(), SETTINGS)
    c = rep.models["c"]
    assert c.status == "ok" and c.elapsed == 1.0 and c.non_empty_count == 2
    assert c.avg_similarity is None and c.speedup is None and c.comparable is None
    assert all(o.similarity is None for o in c.outputs)
    assert "the baseline base failed" in markdown_table(rep)


def test_markdown_table(report: CompareReport) -> None:
    text = markdown_table(report)
    lines = text.splitlines()
    header = lines[0]
    for col in ("model", "status", "engine", "load s", "elapsed s", "tok/s", "speedup", "token speedup"):
        assert f"| {col} |" in header
    rows = [line for line in lines[2:] if line.startswith("| ")]
    assert len(rows) == len(report.models)
    cells = {r.split(" | ")[0].lstrip("| "): [c.strip() for c in r.strip("|").split("|")] for r in rows}
    assert cells["base (baseline)"][6] == "1.00"
    assert cells["compressed-l29"][4] == "1.60 ±0%"
    assert cells["compressed-l29"][6] == "1.25"
    assert cells["compressed-l29"][10] == "2/3"
    assert cells["base-llmc-awq"][2] == "hf/float32"
    assert cells["base-llmc-awq"][6] == "0.25 n/c"
    assert cells["broken"][1] == "failed" and cells["broken"][4] == "–"
    assert "n/c: base-llmc-awq ran on hf/float32" in text
    assert "failed: broken: model folder /x does not exist." in text
    assert "empty output: compressed-l29 on 1 prompt(s): ko" in text


def test_plot_is_a_png(report: CompareReport, tmp_path: Path) -> None:
    import matplotlib.image

    path = plot_tradeoff(report, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (960, 660)


def test_write_compare_reports_writes_three_files_with_one_stem(
    report: CompareReport, tmp_path: Path
) -> None:
    written = write_compare_reports(report, tmp_path / "eval_compare.json")
    assert {p.name for p in written.values()} == {"eval_compare.json", "eval_compare.md", "eval_compare.png"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "eval_compare.json",
        "eval_compare.md",
        "eval_compare.png",
    ]
    assert CompareReport.model_validate_json(written["json"].read_text()) == report
    assert "| compressed-l29 |" in written["markdown"].read_text()


def test_missing_report_folder_fails_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CompressError) as err:
        check_writable_file(tmp_path / "nope" / "r.json")
    missing = tmp_path / "nope"
    assert str(err.value) == (
        f"report folder {missing} does not exist. Fix: create it first (mkdir -p {missing}) "
        "or pass --report-file inside an existing folder"
    )
    with pytest.raises(CompressError, match="is a folder"):
        check_writable_file(tmp_path)


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temp(
    report: CompareReport, tmp_path: Path
) -> None:
    target = tmp_path / "r.json"
    write_json(report, target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write('{"half": ')
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["r.json"]


def test_companion_paths() -> None:
    assert companion_paths("reports/x/run.json") == {
        "json": Path("reports/x/run.json"),
        "markdown": Path("reports/x/run.md"),
        "plot": Path("reports/x/run.png"),
        "fidelity_plot": Path("reports/x/run-fidelity.png"),
    }


def test_model_names_from_folders() -> None:
    specs = name_models(["/m/base", "/m/compressed-l29", "/other/compressed-l29"])
    assert [s.name for s in specs] == ["base", "/m/compressed-l29", "/other/compressed-l29"]
    with pytest.raises(CompressError, match="given twice"):
        name_models(["/m/base", "/m/base"])
