"""README "Gate your own model", end to end on the tiny EXAONE-4 checkpoint, as a user runs it:
init -> build (quick; base and compressed-l29) -> calibrate -> the gate passes -> a degraded copy fails.

Every step is the real command in a subprocess. The build runs in the builder environment
(``$COMPRESS_PYTHON``, which tox sets to the compress env's python), everything else here, in the eval env.
To stay cheap (CI budget) the gate scores 12 fidelity prompts and 13 task items instead of the shipped 122
and 254, passed to calibrate and to the gate alike; nothing is written into the checkout (goldens, thresholds,
reports and models go to a temp folder).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compress.core import paths
from compress.core.prompts import default_fidelity_prompts_file, load_prompts
from compress.local_models.broken import link_copy
from compress.local_models.degrade import perturb_weights

REPO = Path(__file__).resolve().parents[2]
NAME = "own-exaone"
VLLM_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
NOISE = 0.05
"""The degraded copy: compressed-l29 with Gaussian noise of 5 % of each decoder weight's std (a rebuild gone
wrong; on the shipped prompt sets 3 % already raised this model's KL 1.4x, see tests/gate/thresholds.toml)."""


def _unavailable(message: str) -> None:
    pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


def _run(cmds: dict[str, list[str]], work: Path, timings: dict) -> dict[str, subprocess.CompletedProcess]:
    """Run the commands at once (each with one OpenMP thread) and wait for all; log each to work/<step>.log."""
    # Not this pytest's own variables: under xdist they would make the gate's pytest think it is a worker.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"OMP_NUM_THREADS": "1"} if len(cmds) > 1 else {})
    started = time.perf_counter()
    procs = {step: subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for step, cmd in cmds.items()}  # fmt: skip
    out = {}
    for step, proc in procs.items():
        stdout, stderr = proc.communicate()
        out[step] = subprocess.CompletedProcess(cmds[step], proc.returncode, stdout, stderr)
        (work / f"{step}.log").write_text(f"$ {' '.join(cmds[step])}\n{stdout}\n{stderr}", encoding="utf-8")
    timings[" + ".join(cmds)] = round(time.perf_counter() - started, 1)
    return out


def _small_sets(work: Path) -> tuple[Path, Path]:
    prompts = load_prompts(default_fidelity_prompts_file())
    picked = [p for p in prompts if p.lang == "en"][:8] + [p for p in prompts if p.lang == "ko"][:4]
    fidelity = work / "fidelity.json"
    fidelity.write_text(json.dumps([{"id": p.id, "text": p.text, "lang": p.lang} for p in picked]), encoding="utf-8")
    lines = (REPO / "compress/data/tasks/checkable_qa.jsonl").read_text(encoding="utf-8").splitlines()
    tasks = work / "tasks.jsonl"
    tasks.write_text("\n".join(lines[::21]) + "\n", encoding="utf-8")
    return fidelity, tasks


def _outcomes(junit: Path) -> dict[str, str]:
    """Case name -> 'passed', 'skipped', or the first line of its failure or error."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        bad = next(iter([*case.findall("failure"), *case.findall("error")]), None)
        if bad is None:
            out[case.get("name")] = "skipped" if case.find("skipped") is not None else "passed"
        else:
            lines = (bad.get("message") or bad.tag).removeprefix("Failed: ").splitlines()
            out[case.get("name")] = lines[0] if lines else bad.tag
    return out


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if importlib.util.find_spec("vllm") is None:  # not importorskip: importing vLLM here would cost 6 s
        pytest.skip("the gate runs through vLLM: use the eval env")
    source = paths.sources_dir() / "tiny-exaone4"
    builder = os.environ.get("COMPRESS_PYTHON", "")
    if not (source / "config.json").is_file():
        _unavailable(f"{source} is missing (python -m compress make-models)")
    if not builder or not Path(builder).is_file():
        _unavailable("COMPRESS_PYTHON must name the builder env's python (tox sets it; the build needs llm-compressor)")
    for key, value in VLLM_ENV.items():
        os.environ.setdefault(key, value)
    work = tmp_path_factory.mktemp("own-model")
    fidelity, tasks = _small_sets(work)
    thresholds = work / "thresholds.toml"
    shutil.copyfile(REPO / "tests/gate/thresholds.toml", thresholds)
    recipe, models, golden = work / "recipe.toml", work / "models", work / "golden"
    gate = [f"--gate-name={NAME}", f"--gate-golden-dir={golden}", f"--gate-thresholds={thresholds}",
            f"--gate-fidelity-prompts={fidelity}", f"--gate-tasks-file={tasks}"]  # fmt: skip
    compress = [sys.executable, "-m", "compress"]
    pytest_gate = [sys.executable, "-m", "pytest", "tests/gate/test_release_gate.py", "-p", "no:cacheprovider", "-q"]
    t: dict = {}
    models_cmd = {
        "init": [*compress, "init", "--base", str(source), "--name", NAME, "--out", str(recipe)],
        "build": [builder, "-m", "compress", "build", str(recipe), "--profile", "quick",
                  "--variants", "base,compressed-l29", "--out", str(models)],
        "calibrate": [*compress, "calibrate", f"--gate-models-dir={models}", *gate, "--write",
                      f"--work={work / 'calibrate'}"],
    }  # fmt: skip
    out: dict = {"timings": t, "work": work, "thresholds": thresholds, "golden": golden}
    for step, cmd in models_cmd.items():
        out |= _run({step: cmd}, work, t)
        if out[step].returncode != 0:
            done = out[step]
            pytest.fail(f"{step} failed ({done.returncode}), times {t}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    degraded = work / "degraded"
    started = time.perf_counter()
    degraded.mkdir()
    link_copy(models / "base", degraded / "base")
    perturb_weights(models / "compressed-l29", degraded / "compressed-l29", relative_noise=NOISE, seed=3)
    t["degrade"] = round(time.perf_counter() - started, 1)
    # the two gate runs are independent (own models folder and report; goldens and floors only read): at once,
    # one core each, as CI's two cores allow
    out |= _run({
        "gate": [*pytest_gate, f"--gate-models-dir={models}", *gate, f"--gate-report={work / 'gate.json'}"],
        "bad": [*pytest_gate, f"--gate-models-dir={degraded}", *gate, f"--gate-report={work / 'bad.json'}"],
    }, work, t)  # fmt: skip
    print(f"\nGate your own model, seconds per step: {t} (total {sum(t.values()):.0f} s; logs in {work})")
    return out


def test_init_writes_a_recipe_and_build_makes_its_variants(sequence: dict) -> None:
    assert "Exaone4ForCausalLM" in sequence["init"].stdout and "keep 29" in sequence["init"].stdout
    models = sequence["work"] / "models"
    assert (models / "base" / "manifest.json").is_file() and (models / "compressed-l29" / "manifest.json").is_file()


def test_calibrate_records_goldens_writes_only_its_block_and_summarises(sequence: dict) -> None:
    out = sequence["calibrate"].stdout
    assert "the measured runs under these floors: pass" in out
    for key in ("max_mean_kl", "max_p99_kl", "min_top1_agreement", "avg_similarity", "non_empty_rate"):
        assert re.search(rf"^compressed-l29 +{key} ", out, re.M), key
    assert "min_task_recovery" in out and "not clearly above chance" in out  # the tiny model guesses its tasks
    text = sequence["thresholds"].read_text(encoding="utf-8")
    original = (REPO / "tests/gate/thresholds.toml").read_text(encoding="utf-8")
    assert text.startswith(original.rstrip("\n"))  # the user's file is kept, the block appended
    assert f"# --- calibrated: gate {NAME} (" in text and f"[gates.{NAME}.variants.compressed-l29]" in text
    goldens = sorted(p.name for p in (sequence["golden"] / NAME).iterdir())
    assert goldens == ["base.vllm-float32.json", "compressed-l29.vllm-float32.json"]


def test_the_plain_gate_then_passes_on_the_same_folders(sequence: dict) -> None:
    out = sequence["gate"].stdout
    assert "2 snapshots passed" in out and " failed" not in out


def test_the_gate_fails_a_degraded_copy_on_its_calibrated_floors(sequence: dict) -> None:
    done = sequence["bad"]
    assert done.returncode == 1, done.stdout[-3000:]
    outcomes = _outcomes(sequence["work"] / "bad-junit.xml")
    fidelity = outcomes["test_fidelity[compressed-l29]"]
    assert fidelity.startswith("fidelity: compressed-l29 vs base: mean KL"), fidelity
    assert f"floor from thresholds.toml [gates.{NAME}.variants.compressed-l29]" in fidelity
    assert outcomes["test_golden[compressed-l29]"] != "passed"  # its answers moved from the recorded goldens
    assert outcomes["test_golden[base]"] == "passed"
