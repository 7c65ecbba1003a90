"""A gate run that gates nothing is an error, not a pass; this repo's own test runs still skip the gate.

The rule (compress/gate/options.py NOTHING_TO_GATE): without --gate-models-dir, a run that selected only
release-gate cases (``pytest tests/gate/test_release_gate.py``, ``pytest -m gpu``, any ``-k`` of them) errors
each case with the one-line reason and exits 1; a run that also selected other tests (``pytest tests/unit
tests/eval tests/gate``) skips them. A models folder holding only the baseline is an error whatever else runs.
``--gate-allow-empty`` lets both pass. Five pytest subprocesses that load no model, about 3 s each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compress.gate.options import NOTHING_TO_GATE, resolve_gate
from compress.local_models.broken import checkpoint_folder

REPO = Path(__file__).resolve().parents[2]
GATE = "tests/gate/test_release_gate.py"
FIX = "Fix: pass --gate-models-dir=DIR (the folder holding the baseline and its variants), or --gate-allow-empty"


def pytest_run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", COLUMNS="400")
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={REPO}", "-rfEs",
           "--basetemp", str(tmp / "basetemp"), *args]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith("ERROR ")]


def test_the_release_gate_without_a_models_dir_errors_every_case_with_the_fix(tmp_path: Path) -> None:
    proc = pytest_run(tmp_path, GATE)
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    errors = _errors(proc)
    assert len(errors) == 7 and all(NOTHING_TO_GATE in line for line in errors), out[-3000:]  # one per case
    assert FIX in NOTHING_TO_GATE and "INTERNALERROR" not in out
    assert NOTHING_TO_GATE in proc.stdout.splitlines()  # once more on its own line, where the run ends


def test_minus_m_gpu_without_a_models_dir_is_an_error_too(tmp_path: Path) -> None:
    proc = pytest_run(tmp_path, "-m", "gpu")  # the whole test tree, as a GPU runner's job would run it
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout[-3000:]
    errors = _errors(proc)
    assert errors and all("[no-models-dir]" in line and NOTHING_TO_GATE in line for line in errors), errors


def test_allow_empty_lets_a_run_without_models_pass(tmp_path: Path) -> None:
    proc = pytest_run(tmp_path, GATE, "--gate-allow-empty")
    assert proc.returncode == pytest.ExitCode.OK, proc.stdout[-3000:]
    assert "7 skipped" in proc.stdout and "pass --gate-models-dir to run the release gate" in proc.stdout


def test_the_repos_own_test_runs_still_skip_the_gate(tmp_path: Path) -> None:
    """``pytest tests/unit tests/eval tests/gate`` collects the gate file beside other tests: it skips."""
    proc = pytest_run(tmp_path, GATE, "tests/unit/test_metrics.py")
    assert proc.returncode == pytest.ExitCode.OK, proc.stdout[-3000:]
    assert "7 skipped" in proc.stdout and NOTHING_TO_GATE not in proc.stdout


def test_a_models_folder_with_only_the_baseline_errors_every_case(tmp_path: Path) -> None:
    checkpoint_folder(tmp_path / "models" / "base")
    models, report = str(tmp_path / "models"), str(tmp_path / "gate.json")
    proc = pytest_run(tmp_path, GATE, "--gate-models-dir", models, "--gate-report", report)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout[-3000:]
    message = (
        f"release gate: nothing to gate: {tmp_path / 'models'} holds only the baseline 'base'. Fix: build the "
        "variants into it (python -m compress build RECIPE) or point --gate-models-dir at a built matrix; "
        "--gate-allow-empty runs the baseline's own cases anyway"
    )
    errors = _errors(proc)
    assert errors and all(message in line for line in errors), proc.stdout[-3000:]


def test_allow_empty_gates_the_baseline_alone(tmp_path: Path) -> None:
    (tmp_path / "m" / "base").mkdir(parents=True)
    setup = resolve_gate(models_dir=str(tmp_path / "m"), rootdir=REPO, allow_empty=True)
    assert setup.ready and setup.config is not None and setup.config.variants == ()
    named = resolve_gate(models_dir=str(tmp_path / "m"), rootdir=REPO, variants="base")
    assert named.problem is not None and "(--gate-variants named no other)" in named.problem
