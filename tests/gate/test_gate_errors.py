"""Bad input inside the gate's pytest session: every case it spoils errors with the one-line message and its
fix, the session ends normally (exit 1, no INTERNALERROR), and no model is loaded to find out.

Three real runs of tests/gate/test_release_gate.py in subprocesses, each about 10 s (the gate's own imports):

* every variant folder broken in a different way (compress.local_models.broken.broken_folder), the baseline too;
* a prompts file that is not UTF-8 (it used to crash the session while the gate was being set up);
* a --gate-report whose folder does not exist.

The messages of the other set-up problems (missing --gate-models-dir, unknown variant, malformed thresholds)
are pinned at resolve level in test_gate_parts.py; they travel the same way as these.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compress.local_models.broken import BROKEN, broken_folder, checkpoint_folder

REPO = Path(__file__).resolve().parents[2]
# The part of each defect's message a case must show (the folder path comes before it).
MESSAGES = {
    "no-config": "has no config.json. Fix: point at a complete model folder",
    "config-not-json": "config.json is not valid JSON (",
    "config-a-list": "config.json holds a JSON list, not an object. Fix: rebuild or restore the folder",
    "unsupported-architecture": "has unsupported architecture 'GPT2LMHeadModel'. Fix: use one of:",
    "no-architectures": "has no architectures list in config.json. Fix:",
    "no-weights": "has no safetensors weights. Fix: save the model with save_pretrained(safe_serialization=True)",
    "only-pickled-weights": "has no safetensors weights (only pickled .bin/.pt). Fix:",
    "missing-shard": "lacks weight shards its model.safetensors.index.json lists",
    "no-tokenizer": "has no tokenizer (tokenizer.json). Fix: copy the base model's tokenizer files",
    "no-chat-template": "has no chat template. Fix: copy chat_template.jinja",
}
BASELINE_DEFECT = "config-not-json"


def run_gate(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", COLUMNS="400")
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [
        sys.executable, "-m", "pytest", "tests/gate/test_release_gate.py", "-p", "no:cacheprovider",
        "-p", "no:hypothesispytest", f"--rootdir={REPO}", "-rfE", "--tb=line", "--basetemp", str(tmp / "basetemp"),
        *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    (tmp / "run.log").write_text(proc.stdout + proc.stderr)
    return proc


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """``{case id: (passed|failed|error|skipped, message)}`` from a JUnit XML file."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        state, text = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                state, text = {"failure": "failed"}.get(tag, tag), node.get("message", "")
                break
        found[case.get("name", "")] = (state, text)
    return found


def assert_session_ended_normally(proc: subprocess.CompletedProcess) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    assert "INTERNALERROR" not in out and "Traceback" not in out, out[-3000:]


# --- broken model folders -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    tmp = tmp_path_factory.mktemp("broken-gate")
    models = tmp / "models"
    broken_folder(models / "base", BASELINE_DEFECT)
    for defect in BROKEN:
        broken_folder(models / defect, defect)
    (tmp / "reports").mkdir()
    golden = tmp / "golden"
    proc = run_gate(
        tmp,
        "--gate-models-dir", str(models), "--gate-golden-dir", str(golden), "--junitxml", str(tmp / "junit.xml"),
        "--gate-report", str(tmp / "reports" / "gate.json"),
    )  # fmt: skip
    assert (tmp / "junit.xml").is_file(), (proc.stdout + proc.stderr)[-3000:]
    return proc, outcomes(tmp / "junit.xml"), tmp


def test_broken_folders_error_their_cases_and_the_session_ends_normally(broken_run) -> None:
    proc, results, _ = broken_run
    assert_session_ended_normally(proc)
    assert results and all(state in ("error", "skipped") for state, _ in results.values()), results


@pytest.mark.parametrize("defect", BROKEN)
def test_each_broken_variant_errors_with_its_message(broken_run, defect: str) -> None:
    _, results, tmp = broken_run
    for case in (f"test_golden[{defect}]", f"test_variant_metrics[{defect}]", f"test_non_empty[{defect}-hello]"):
        state, text = results[case]
        assert state == "error", (case, state, text)
        assert f"variant {defect} could not run: model folder {tmp / 'models' / defect}" in text or (
            f"variant {defect} could not run: {tmp / 'models' / defect}/config.json" in text
        ), text
        assert MESSAGES[defect] in text and "\n" not in text.strip(), text


def test_a_broken_baseline_errors_its_own_cases(broken_run) -> None:
    _, results, tmp = broken_run
    state, text = results["test_golden[base]"]
    assert state == "error" and f"variant base could not run: {tmp / 'models' / 'base'}/config.json" in text
    assert MESSAGES[BASELINE_DEFECT] in text


def test_nothing_is_written_but_the_reports(broken_run) -> None:
    """No golden file is written for a variant that did not run, and the run report lists each failure."""
    import json

    _, _, tmp = broken_run
    assert not (tmp / "golden").exists()
    report = json.loads((tmp / "reports" / "gate.json").read_text(encoding="utf-8"))
    assert {name: m["status"] for name, m in report["models"].items()} == dict.fromkeys(["base", *BROKEN], "failed")


# --- set-up problems ----------------------------------------------------------------------------------


def _good_models(tmp: Path) -> Path:
    """Folders that would pass the checks; no case gets far enough to load them."""
    for name in ("base", "l29"):
        checkpoint_folder(tmp / "models" / name)
    return tmp / "models"


def test_a_prompts_file_that_is_not_utf8_errors_every_case(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"\xff\xfe not text")
    junit = tmp_path / "junit.xml"
    proc = run_gate(
        tmp_path, "--gate-models-dir", str(_good_models(tmp_path)), "--gate-prompts-file", str(prompts),
        "--junitxml", str(junit)
    )
    assert_session_ended_normally(proc)
    results = outcomes(junit)
    errored = {k: v for k, v in results.items() if v[0] == "error"}
    setup_cases = {k for k in results if "gate-setup-error" in k and not k.startswith("test_speedup")}
    assert errored and set(errored) == setup_cases, results
    for _, text in errored.values():
        assert f"prompts file {prompts} is malformed (UnicodeDecodeError" in text and "Fix: use [[prompt]]" in text


@pytest.fixture(scope="module")
def no_report_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    tmp = tmp_path_factory.mktemp("no-report-folder")
    missing = tmp / "no" / "such"
    proc = run_gate(tmp, "--gate-models-dir", str(_good_models(tmp)), "--gate-report", str(missing / "gate.json"))
    return proc, missing


def test_a_report_folder_that_does_not_exist_errors_every_case(no_report_folder) -> None:
    proc, missing = no_report_folder
    assert_session_ended_normally(proc)
    message = f"report folder {missing} does not exist. Fix: create it first (mkdir -p {missing})"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ERROR ")]
    assert len(lines) == 6 and all(message in line for line in lines), proc.stdout[-3000:]  # one per case


def test_a_report_folder_that_does_not_exist_is_not_created(no_report_folder) -> None:
    _, missing = no_report_folder
    assert not missing.exists(), sorted(p.name for p in missing.iterdir())
