"""The gate's own behaviour, end to end through real vLLM CPU ``chat()`` on the tiny EXAONE-4 model.

A temp models folder holds the baseline and four variants made from it:

* ``good``   hard links to the baseline's files: passes everything, including a low speed floor;
* ``empty``  the final norm's weight zeroed: every logit is 0, greedy picks a special token: answers are '';
* ``nochat`` no chat template: the engine refuses it before loading, so its cases error with that message;
* ``slow``   the decoder layers repeated 3x, the copies made exact identities (o_proj and down_proj zeroed,
  so each adds 0 to the residual): the same answers at about a third of the speed, below its 0.8x floor.

Three pytest runs of tests/gate/test_release_gate.py in subprocesses (options from the root conftest):
1. all variants, ``--gate-speed-on-cpu --snapshot-update``: verdicts, messages, goldens, report and JUnit XML;
2. ``-n 2``, goldens only, after tampering with goldens: a changed answer, a file that is not JSON and a golden
   recorded from other weights fail, the baseline's golden stripped of its provenance passes with a warning,
   nothing is rewritten, no model is loaded twice across workers;
3. ``--snapshot-update``: the tampered goldens are rewritten to what run 1 wrote; other gates' files stay.
   Runs 2 and 3 share one ``--gate-baseline-cache``: run 3 reads the baseline's answers run 2 made.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from compress.core.errors import CompressError
from compress.core.prompts import default_fidelity_prompts_file, load_prompts
from compress.core.tasks import default_tasks_file
from compress.local_models.broken import link_copy, zero_final_norm
from compress.local_models.degrade import add_idle_layers
from compress.local_models.registry import local_model

REPO = Path(__file__).resolve().parents[2]
SOURCE = "tiny-exaone4"
GATE = "selfcheck"
THRESHOLDS = """
[gates.selfcheck.defaults]
min_similarity = 0.5
avg_similarity = 0.9
exact_match = 0.9
non_empty_rate = 1.0
speedup = 0.5          # good: a copy of the baseline, ~1.0x on a quiet CPU

[gates.selfcheck.variants.slow]
speedup = 0.8          # slow: three times the layers, ~0.35x
"""
SMALL_FIDELITY, SMALL_TASKS = 8, 24
Results = dict[str, tuple[str, str]]
FirstRun = tuple[subprocess.CompletedProcess, Results]
VLLM_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
}


# --- broken variants ------------------------------------------------------------------------------------


def make_nochat_variant(src: Path, dest: Path) -> Path:
    link_copy(src, dest, skip=("chat_template.jinja", "chat_template.json", "tokenizer_config.json"))
    tok_config = src / "tokenizer_config.json"
    if tok_config.is_file():
        data = json.loads(tok_config.read_text(encoding="utf-8"))
        data.pop("chat_template", None)
        (dest / "tokenizer_config.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return dest


def make_slow_variant(src: Path, dest: Path, times: int = 3) -> Path:
    """The decoder layers ``times`` over, the copies adding exactly 0 (compress.local_models.degrade)."""
    layers = json.loads((src / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]
    return add_idle_layers(src, dest, extra=(times - 1) * layers)


def write_small_quality_sets(tmp: Path) -> None:
    """The first prompts of the fidelity set and items of the task set: the self-check pins verdicts and
    messages, not statistics, and the full sets cost a minute here (README "Quality verdicts" has those)."""
    fidelity = load_prompts(default_fidelity_prompts_file())[:SMALL_FIDELITY]
    (tmp / "fidelity.json").write_text(json.dumps([asdict(p) for p in fidelity]), encoding="utf-8")
    lines = default_tasks_file().read_text(encoding="utf-8").splitlines()
    (tmp / "tasks.jsonl").write_text("\n".join(lines[:SMALL_TASKS]) + "\n", encoding="utf-8")


# --- running the gate -----------------------------------------------------------------------------------


def run_gate(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({k: os.environ.get(k, v) for k, v in VLLM_ENV.items()})
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    # One OpenMP thread per process: robust on a busy or shared CPU (2 spinning threads on 2 busy cores made
    # a batch 30x slower here); the gate itself sets this per xdist worker.
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [
        sys.executable, "-m", "pytest", "tests/gate/test_release_gate.py", "-p", "no:cacheprovider",
        f"--rootdir={REPO}", "-rfE", "--tb=short",
        "--gate-models-dir", str(tmp / "models"), "--gate-name", GATE, "--gate-engine", "vllm",
        "--gate-thresholds", str(tmp / "thresholds.toml"), "--gate-golden-dir", str(tmp / "golden"),
        "--gate-report", str(tmp / "reports" / f"{GATE}.json"),
        "--gate-fidelity-prompts", str(tmp / "fidelity.json"), "--gate-tasks-file", str(tmp / "tasks.jsonl"),
        *args,
    ]  # fmt: skip
    n = len(list(tmp.glob("run*.log"))) + 1
    cmd += ["--basetemp", str(tmp / f"basetemp{n}")]  # not the outer session's numbered temp folders
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    (tmp / f"run{n}.log").write_text(proc.stdout + proc.stderr)
    return proc


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """``{case id: (passed|failed|error|skipped, message + text)}`` from a JUnit XML file."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "").split("@")[0]  # xdist's loadgroup adds @<group>
        state, text = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                state = {"failure": "failed"}.get(tag, tag)
                text = f"{node.get('message', '')}\n{node.text or ''}"
                break
        found[name] = (state, text)
    return found


@pytest.fixture(scope="module")
def selfcheck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    pytest.importorskip("vllm", reason="the self-check runs the gate through vLLM: use the eval env")
    try:
        source = local_model(SOURCE)
    except CompressError as err:
        if os.environ.get("CI"):
            pytest.fail(str(err))
        pytest.skip(str(err))
    tmp = tmp_path_factory.mktemp("gate")
    models = tmp / "models"
    link_copy(source, models / "base")
    link_copy(source, models / "good")
    zero_final_norm(source, models / "empty")
    make_nochat_variant(source, models / "nochat")
    make_slow_variant(source, models / "slow")
    (tmp / "thresholds.toml").write_text(THRESHOLDS, encoding="utf-8")
    write_small_quality_sets(tmp)
    (tmp / "reports").mkdir()
    yield tmp


@pytest.fixture(scope="module")
def first_run(selfcheck: Path) -> FirstRun:
    other = selfcheck / "golden" / "other-gate" / "base.vllm-float32.json"
    other.parent.mkdir(parents=True)
    other.write_text('{"kept": true}\n')
    # 1 warm-up + 3 timed rounds per model (the GPU default is 2 + 8): a 3x slowdown needs few on a CPU
    proc = run_gate(selfcheck, "--gate-speed-on-cpu", "--snapshot-update", "--gate-warmup", "1", "--gate-repeats", "3")
    junit = selfcheck / "reports" / f"{GATE}-junit.xml"
    assert junit.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, outcomes(junit)


def _cases(results: dict, variant: str) -> dict[str, tuple[str, str]]:
    return {k: v for k, v in results.items() if re.search(rf"\[{variant}(-|\])", k)}


def test_good_variants_pass_every_case(first_run: FirstRun) -> None:
    _, results = first_run
    for variant in ("base", "good"):
        cases = _cases(results, variant)
        assert cases and all(state == "passed" for k, (state, _) in cases.items() if "task_accuracy" not in k), cases
    assert results["test_speedup[good]"][0] == "passed"
    assert results["test_fidelity[good]"][0] == "passed"  # the same weights: KL 0, top-1 agreement 1
    # the tiny model is trained for a minute: at chance on the task set, so its task case says so and skips
    state, text = results["test_task_accuracy[good]"]
    assert state == "skipped" and "not clearly above chance" in text, text
    assert len(_cases(results, "good")) == 10 + 10 + 1 + 1 + 1 + 1 + 1


def test_a_destroyed_model_fails_fidelity_with_its_figures(first_run: FirstRun) -> None:
    _, results = first_run
    state, text = results["test_fidelity[empty]"]
    assert state == "failed" and "fidelity: empty vs base: mean KL" in text, text
    assert "greedy choices part at answer token 0" in text


def test_an_empty_output_model_fails_saying_how_many_prompts_went_unanswered(first_run: FirstRun) -> None:
    _, results = first_run
    state, text = results["test_variant_metrics[empty]"]
    assert state == "failed"
    assert "non-empty: 0/10 prompts answered (rate 0.00 < floor 1.00, short by 1.00)" in text
    state, text = results["test_non_empty[empty-hello]"]
    assert state == "failed" and "non-empty: empty answered nothing visible to 'hello'" in text
    assert "empty:  ''" in text  # its side, repr-quoted, beside the baseline's answer
    assert results["test_similarity[empty-hello]"][0] == "failed"


def test_a_folder_without_chat_template_errors_with_the_folder_check_message(first_run: FirstRun) -> None:
    _, results = first_run
    cases = _cases(results, "nochat")
    assert cases and all(state == "error" for state, _ in cases.values()), cases
    assert "variant nochat could not run: model folder" in cases["test_golden[nochat]"][1]
    assert "has no chat template. Fix: copy chat_template.jinja" in cases["test_golden[nochat]"][1]


def test_a_slower_variant_fails_its_speed_floor_with_both_sides_rounds(first_run: FirstRun) -> None:
    _, results = first_run
    state, text = results["test_speedup[slow]"]
    assert state == "failed", text
    assert re.search(r"speedup 0\.\d\dx < floor 0\.80x for slow vs base \(median of 3 per-round ratios, "
                     r"range 0\.\d\d-\d\.\d\d; short by 0\.\d\d\)", text), text  # fmt: skip
    assert re.search(r"base: +median \d+\.\d{3} s, \d+ tok/s \(rounds ", text), text
    assert "rounds interleaved with the baseline (both in float32), after 1 warm-up; 10 sequences x 64 tokens" in text
    # identity layers: the same answers, so only speed regressed
    timed_or_tasks = ("test_speedup[slow]", "test_task_accuracy[slow]")
    others = {k: v for k, v in _cases(results, "slow").items() if k not in timed_or_tasks}
    assert all(state == "passed" for state, _ in others.values()), others  # fidelity too: KL 0


def test_the_run_leaves_goldens_a_report_and_junit(first_run: FirstRun, selfcheck: Path) -> None:
    proc, _ = first_run
    golden = selfcheck / "golden" / GATE
    names = sorted(p.name for p in golden.iterdir())
    assert names == [f"{v}.vllm-float32.json" for v in ("base", "empty", "good", "slow")]
    text = (golden / "good.vllm-float32.json").read_text(encoding="utf-8")
    record = json.loads(text)
    assert text == json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True) + "\n"  # readable, sorted
    assert record["metrics"] == {
        "avg_similarity": 1.0,
        "exact_match": 1.0,
        "non_empty_count": 10,
        "non_empty_rate": 1.0,
    }
    assert record["outputs"]["hello"]["answer"] and "seconds" not in text and "timing" not in text
    empty = json.loads((golden / "empty.vllm-float32.json").read_text(encoding="utf-8"))
    assert {o["answer"] for o in empty["outputs"].values()} == {""}
    report = json.loads((selfcheck / "reports" / f"{GATE}.json").read_text(encoding="utf-8"))
    assert report["kind"] == "eval-compare" and report["baseline"] == "base"
    assert report["models"]["nochat"]["status"] == "failed"
    assert report["models"]["good"]["exact_match"] == 1.0 and report["models"]["empty"]["non_empty_count"] == 0
    assert report["models"]["slow"]["token_speedup"] < 0.8
    assert (selfcheck / "reports" / f"{GATE}.md").is_file()
    assert f"release gate {GATE}" in proc.stdout
    # provenance: these folders are link copies without a manifest, so their weights hash alone identifies them
    folder, recorded_with = record["provenance"]["folder"], record["provenance"]["recorded_with"]
    base_weights = report["models"]["base"]["provenance"]["weights_sha256"]
    assert folder["manifest"] is False and folder["weights_sha256"] == base_weights  # good: base hard-linked
    assert recorded_with["device"] == "cpu" and recorded_with["versions"]
    assert "warning: good: no manifest.json (built elsewhere?): identified by its weights hash" in proc.stdout


def test_the_variant_to_ship_is_the_one_that_passed_everything(first_run: FirstRun, selfcheck: Path) -> None:
    proc, _ = first_run
    report = json.loads((selfcheck / "reports" / f"{GATE}.json").read_text(encoding="utf-8"))
    rec = report["recommendation"]
    assert rec["variant"] == "good" and rec["rule"] == "fastest"  # --gate-speed-on-cpu timed it
    assert rec["ranking"][0]["name"] == "good" and not any(r["eligible"] for r in rec["ranking"][1:])
    why = {r["name"]: r["why_not"] for r in rec["ranking"]}
    assert why["slow"] == "failed test_speedup[slow]" and why["nochat"] == "did not run"
    assert report["models"]["good"]["verdict"]["speed"] == "passed"
    line = r"variant to ship: good: the fastest of 1 variant\(s\) that passed every case: speedup \d"
    assert re.search(line, proc.stdout), proc.stdout[-3000:]
    assert "## Variant to ship" in (selfcheck / "reports" / f"{GATE}.md").read_text(encoding="utf-8")


def test_golden_mismatches_fail_and_only_snapshot_update_rewrites(first_run: FirstRun, selfcheck: Path) -> None:
    golden = selfcheck / "golden" / GATE
    good, empty = golden / "good.vllm-float32.json", golden / "empty.vllm-float32.json"
    written = {p: p.read_text(encoding="utf-8") for p in (good, empty)}
    tampered = json.loads(written[good])
    tampered["outputs"]["hello"]["answer"] = "tampered answer"
    good.write_text(json.dumps(tampered, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    empty.write_text('{"outputs": {', encoding="utf-8")
    slow, base = golden / "slow.vllm-float32.json", golden / "base.vllm-float32.json"
    rebuilt = json.loads(slow.read_text(encoding="utf-8"))  # as if recorded from another build of slow
    rebuilt["provenance"]["folder"]["weights_sha256"] = "0" * 64
    slow.write_text(json.dumps(rebuilt, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    old = json.loads(base.read_text(encoding="utf-8"))  # as goldens were before they carried provenance
    del old["provenance"]
    base.write_text(json.dumps(old, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    before = {p: p.read_text(encoding="utf-8") for p in (good, empty, slow, base)}

    cache = ("--gate-baseline-cache", str(selfcheck / "baseline-cache"))  # runs 2 and 3 measure base once
    proc = run_gate(selfcheck, "-n", "2", "--gate-variants", "good,empty,slow", "-k", "test_golden", *cache)
    results = outcomes(selfcheck / "reports" / f"{GATE}-junit.xml")
    assert results["test_golden[base]"][0] == "passed", proc.stdout[-3000:]
    state, text = results["test_golden[good]"]
    assert state == "failed" and "tampered answer" in text, text
    state, text = results["test_golden[empty]"]
    assert state == "failed" and f"golden file {empty} is not valid JSON" in text, text
    state, text = results["test_golden[slow]"]
    assert state == "failed" and f"golden: slow (vllm-float32): the folder changed since {slow} was recorded" in text
    assert "(the answers are still the same)" in text and "changed: weights 000000000000 -> " in text, text
    assert "golden files recorded before goldens carried provenance are compared by their answers only" in proc.stdout
    assert "variant to ship: none: no variant passed every case" in proc.stdout  # verdicts came through xdist
    assert {p: p.read_text(encoding="utf-8") for p in before} == before  # a check never writes
    loads = re.search(r"models loaded: (.*)", proc.stdout)
    assert loads, proc.stdout[-3000:]
    loaded = re.findall(r"(\w+) \((gw\d), ok, load \d+ s\)", loads[1])
    assert sorted(v for v, _ in loaded) == ["base", "empty", "good", "slow"], loads[1]  # each once, over 2 workers
    assert len({w for _, w in loaded}) == 2

    proc = run_gate(selfcheck, "--gate-variants", "good,empty", "-k", "test_golden", "--snapshot-update", *cache)
    assert proc.returncode == 0, proc.stdout[-3000:]
    loads = re.search(r"models loaded: (.*)", proc.stdout)
    assert loads and "base (" not in loads[1], proc.stdout[-3000:]  # the baseline came from run 2's file
    assert {p: p.read_text(encoding="utf-8") for p in (good, empty)} == written
    assert (selfcheck / "golden" / "other-gate" / "base.vllm-float32.json").is_file()
    assert (golden / "slow.vllm-float32.json").is_file()  # not part of this run: neither unused nor deleted
