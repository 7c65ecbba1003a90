"""`python -m compress eval-compare` through the real vLLM CPU engine.

One run (module-scoped) compares the local tiny EXAONE-4 (a real chat template and tokenizer at a size whose
loads take seconds; SmolLM2's real answers are the gate's and test_engines' business) with four candidates
made from it: a hard-linked copy
(must match exactly), a folder that does not exist and one with unreadable weights (both must be reported
as failed while the others still run), and one whose final norm is zeroed (must be caught as empty output).
Three models load; the tests read that one report. The argument checks below it load nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.cli import main
from compress.local_models.broken import corrupt_weights, link_copy, zero_final_norm
from compress.local_models.registry import local_model
from compress.reports import CompareReport

# Small enough to keep the three loads the bulk of the time; the fixed prompts are the default.
BASE = "tiny-exaone4"
MAX_TOKENS = 16
TASKS = Path(__file__).resolve().parents[2] / "compress/data/tasks/checkable_qa.jsonl"
TIMING_ARGS = ["--warmup", "1", "--repeats", "2", "--max-tokens", str(MAX_TOKENS)]


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = local_model(BASE)
    root = tmp_path_factory.mktemp("variants")
    candidates = [
        link_copy(base, root / "copy"),
        root / "missing",
        corrupt_weights(base, root / "broken-weights"),
        zero_final_norm(base, root / "zero-norm"),
    ]
    report_file = tmp_path_factory.mktemp("reports") / "eval_compare.json"
    # small quality sets: the fields and the second plot are what is pinned here, not the model's figures
    fidelity = root / "fidelity.txt"
    fidelity.write_text("Name a fruit that is yellow.\nWhat do bees make?\n", encoding="utf-8")
    tasks = root / "tasks.jsonl"
    tasks.write_text("".join(line + "\n" for line in TASKS.read_text(encoding="utf-8").splitlines()[:8]))
    args = ["eval-compare", "--baseline-model", str(base), "--candidate-models", *map(str, candidates)]
    quality = ["--fidelity-prompts", str(fidelity), "--tasks-file", str(tasks)]
    code = main([*args, "--report-file", str(report_file), *TIMING_ARGS, *quality])
    return {
        "code": code,
        "json": report_file,
        "report": CompareReport.model_validate_json(report_file.read_text()),
        "raw": json.loads(report_file.read_text()),
    }


def test_writes_json_table_and_plot_beside_each_other(compare_run: dict) -> None:
    folder = compare_run["json"].parent
    assert sorted(p.name for p in folder.iterdir()) == [
        "eval_compare-fidelity.png",
        "eval_compare.json",
        "eval_compare.md",
        "eval_compare.png",
    ]
    assert (folder / "eval_compare-fidelity.png").read_bytes()[:4] == b"\x89PNG"
    assert (folder / "eval_compare.png").read_bytes()[:4] == b"\x89PNG"
    table = (folder / "eval_compare.md").read_text()
    for name in (f"{BASE} (baseline)", "copy", "missing", "broken-weights", "zero-norm"):
        assert f"| {name} |" in table


def test_candidates_carry_fidelity_and_task_figures(compare_run: dict) -> None:
    models = compare_run["report"].models
    copy, zero = models["copy"], models["zero-norm"]
    assert copy.mean_kl == pytest.approx(0.0, abs=1e-6) and copy.top1_agreement == 1.0  # the same weights
    assert zero.mean_kl is not None and zero.mean_kl > 1.0 and zero.top1_agreement < 0.2  # all logits 0
    assert copy.fidelity["all"].n_prompts == 12  # the 10 fixed prompts and the 2 of the fidelity file
    assert copy.tasks is not None and copy.tasks.n_items == 8 and copy.task_recovery == pytest.approx(1.0)
    assert models["missing"].mean_kl is None  # a failed model has no figures, not zeros


def test_exit_code_says_models_failed(compare_run: dict) -> None:
    assert compare_run["code"] == 1


def test_report_schema(compare_run: dict) -> None:
    raw = compare_run["raw"]
    assert raw["kind"] == "eval-compare" and raw["baseline"] == BASE
    assert len(raw["prompts"]) == 10  # the fixed prompts, EN + KO
    assert {p["lang"] for p in raw["prompts"]} >= {"en", "ko"}
    assert raw["sampling"]["temperature"] == 0.0 and raw["sampling"]["min_tokens"] == 8
    assert raw["sampling"]["max_tokens"] == MAX_TOKENS
    assert raw["settings"]["warmup"] == 1 and raw["settings"]["repeats"] == 2
    base = raw["models"][BASE]
    for key in (
        "elapsed", "speedup", "avg_similarity", "exact_match", "non_empty_count", "non_empty_rate", "outputs",
        "load_seconds", "output_tokens", "tokens_per_second", "token_speedup", "timing", "engine", "status",
        "error", "deterministic",
    ):  # fmt: skip
        assert key in base, key
    assert len(base["timing"]["runs"]) == 2
    assert base["engine"]["engine"] == "vllm" and base["engine"]["device"] == "cpu"
    assert base["engine"]["versions"]["torch"].startswith("2.13")
    assert [o["id"] for o in base["outputs"]] == [p["id"] for p in raw["prompts"]]


def test_baseline_and_copy_agree_exactly(compare_run: dict) -> None:
    models = compare_run["report"].models
    base, copy = models[BASE], models["copy"]
    for m in (base, copy):
        assert m.status == "ok" and m.non_empty_count == 10 and m.deterministic is True
        assert m.load_seconds and m.load_seconds > 0 and m.elapsed and m.elapsed > 0
    assert copy.exact_match == 1.0 and copy.avg_similarity == 1.0
    assert [o.output for o in copy.outputs] == [o.output for o in base.outputs]
    assert copy.comparable is True
    assert copy.speedup == pytest.approx(base.elapsed / copy.elapsed)
    assert copy.tokens_per_second == pytest.approx(copy.output_tokens / copy.elapsed)
    assert copy.output_tokens == sum(o.output_tokens for o in copy.outputs)


def test_failed_models_are_reported_and_the_others_still_ran(compare_run: dict) -> None:
    models = compare_run["report"].models
    missing, broken = models["missing"], models["broken-weights"]
    assert missing.status == "failed" and "does not exist. Fix:" in (missing.error or "")
    assert broken.status == "failed" and broken.error
    # zero-norm ran after both failures: a failed load does not take the process down with it.
    assert models["zero-norm"].status == "ok"


def test_empty_output_is_caught(compare_run: dict) -> None:
    empty = compare_run["report"].models["zero-norm"]
    assert empty.non_empty_count == 0 and empty.non_empty_rate == 0.0
    assert all(not o.non_empty and o.output.strip() == "" for o in empty.outputs)
    assert all(o.output_tokens >= 8 for o in empty.outputs)  # tokens were generated, none visible
    assert empty.avg_similarity == 0.0 and empty.exact_match == 0.0
    table = compare_run["json"].with_suffix(".md").read_text()
    assert "empty output: zero-norm on 10 prompt(s)" in table


# --- checks that must fail before any model loads


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded although the command should have stopped first")

    monkeypatch.setattr("compress.evaluation.compare.run_model", no_load)


def run_cli(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, list[str]]:
    code = main(["eval-compare", *map(str, args)])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("error:")]


@pytest.mark.usefixtures("no_model_loads")
def test_missing_report_folder_fails_fast(tmp_path: Path, capsys) -> None:
    code, errors = run_cli(
        capsys,
        "--baseline-model",
        tmp_path,
        "--candidate-models",
        tmp_path,
        "--report-file",
        tmp_path / "x/r.json",
    )
    assert code == 2
    assert errors == [
        f"error: report folder {tmp_path / 'x'} does not exist. "
        f"Fix: create it first (mkdir -p {tmp_path / 'x'}) or pass --report-file inside an existing folder"
    ]


@pytest.mark.usefixtures("no_model_loads")
def test_malformed_prompts_file_fails_fast(tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text("{not json")
    code, errors = run_cli(
        capsys, "--baseline-model", "a", "--candidate-models", "b",
        "--report-file", tmp_path / "r.json", "--prompts-file", prompts,
    )  # fmt: skip
    assert code == 2 and len(errors) == 1 and "is malformed" in errors[0] and "Fix:" in errors[0]


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-tokens", "4"], "--min-tokens 8 is not between 0 and --max-tokens 4"),
        (["--repeats", "0"], "--repeats must be at least 1"),
    ],
)
def test_bad_numbers_fail_fast(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    base = ["--baseline-model", "a", "--candidate-models", "b", "--report-file", tmp_path / "r.json"]
    code, errors = run_cli(capsys, *base, *extra)
    assert code == 2 and len(errors) == 1 and message in errors[0]


@pytest.fixture
def matrix_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake home with matrix `m`: a base, two variants, and leftovers a killed build could leave."""
    home = tmp_path / "home"
    folder = home / "models" / "m"
    for name in ("base", "compressed-l29", "base-distilled", "base-distilled.tmp-123", "notes"):
        (folder / name).mkdir(parents=True)
        if name != "notes":
            (folder / name / "config.json").write_text("{}")
    (folder / "base.lock").write_text("")
    monkeypatch.setenv("EXAONE_COMPRESSION_HOME", str(home))
    return folder


def test_matrix_picks_base_and_variants_in_a_stable_order(matrix_home: Path) -> None:
    from compress.evaluation.compare import matrix_models

    baseline, candidates = matrix_models("m")
    assert (baseline.name, baseline.model_dir) == ("base", matrix_home / "base")
    assert [c.name for c in candidates] == ["base-distilled", "compressed-l29"]
    assert [c.name for c in matrix_models("m", ["compressed-l29"])[1]] == ["compressed-l29"]


@pytest.mark.usefixtures("no_model_loads")
def test_unknown_matrix_or_variant_fails_fast(matrix_home: Path, tmp_path: Path, capsys) -> None:
    code, errors = run_cli(capsys, "--matrix", "nope", "--report-file", tmp_path / "r.json")
    assert (
        code == 2
        and "variant matrix 'nope' has no folder" in errors[0]
        and "python -m compress build" in errors[0]
    )
    code, errors = run_cli(
        capsys, "--matrix", "m", "--candidate-models", "l28", "--report-file", tmp_path / "r.json"
    )
    assert code == 2 and errors == [
        "error: matrix 'm' has no variant l28 in "
        + str(matrix_home)
        + ". Fix: pick from: base-distilled, compressed-l29"
    ]
