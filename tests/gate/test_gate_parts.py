"""The gate's parts without a model: thresholds files, failure messages, golden files, option resolution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest
from fake_engine import FakeEngine  # tests/gate/fake_engine.py

from compress.core.errors import CompressError
from compress.core.prompts import Prompt
from compress.core.similarity import compare_outputs
from compress.engines import BatchResult, Generation, SamplingConfig
from compress.engines.vllm_engine import llm_kwargs
from compress.evaluation.run import ModelRun, run_from_dict, run_to_dict
from compress.evaluation.speed import SpeedRounds, SpeedWorkload, interleaved_rounds
from compress.evaluation.timing import Timing
from compress.folders.matrix import list_variants
from compress.gate.cases import scope_of, variant_ids
from compress.gate.checks import (
    GateFailure,
    check_non_empty,
    check_similarity,
    check_speedup,
    check_variant_metrics,
)
from compress.gate.options import junit_file_for, resolve_gate
from compress.gate.report import with_speed_verdicts
from compress.gate.session import SHARED_KV_CACHE_BYTES, GateSession, pin_worker_gpus, workers_share_a_gpu
from compress.gate.snapshot import GoldenJSONExtension, answer_drift, golden_key, golden_problem, golden_record
from compress.gate.thresholds import Thresholds, load_thresholds
from compress.reports.compare import build_report
from compress.reports.json_report import Settings

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [
    Prompt("hello", "hello"),
    Prompt("ko-capital", "대한민국의 수도는 어디인가요?"),
    Prompt("sky", "Why?"),
]


def _thresholds(tmp_path: Path, text: str) -> Thresholds:
    file = tmp_path / "thresholds.toml"
    file.write_text(text, encoding="utf-8")
    return load_thresholds(file)


def _run(name: str, texts: list[str], runs: list[float] | None = None) -> ModelRun:
    gens = [
        Generation(prompt=p.text, text=t, prompt_tokens=5, output_tokens=8, finish_reason="stop")
        for p, t in zip(PROMPTS, texts, strict=True)
    ]
    return ModelRun(
        name=name,
        model_dir=f"/m/{name}",
        load_seconds=1.5,
        result=BatchResult(generations=gens, seconds=0.5, metadata={"deterministic": True}),
        timing=Timing(runs=runs or [0.5, 0.6, 0.55], output_tokens=24),
        engine={"engine": "vllm", "dtype": "float32", "device": "cpu"},
    )


# --- thresholds -----------------------------------------------------------------------------------------


def test_thresholds_resolve_most_specific_table_last_and_say_where(tmp_path: Path) -> None:
    th = _thresholds(
        tmp_path,
        "[defaults]\navg_similarity = 0.6\nspeedup = 0.9\n"
        "[variants.l29]\nspeedup = 0.8\navg_similarity = 0.5\n"
        "[gates.tiny.defaults]\navg_similarity = 0.7\n"
        "[gates.tiny.variants.l29]\navg_similarity = 0.3\n",
    )
    l29 = th.for_variant("tiny", "l29")
    assert l29.floors.avg_similarity == 0.3
    assert l29.floors.speedup == 0.8
    assert l29.floors.non_empty_rate == 1.0
    assert l29.source("avg_similarity") == "thresholds.toml [gates.tiny.variants.l29]"
    assert l29.source("speedup") == "thresholds.toml [variants.l29]"
    assert l29.source("non_empty_rate") == "built-in default"
    assert th.for_variant("tiny", "other").floors.avg_similarity == 0.7
    assert th.for_variant("tiny", "other").floors.speedup == 0.9
    # a variant's table holds in every gate, below that gate's own tables
    assert th.for_variant("smollm2", "l29").floors.avg_similarity == 0.5
    assert th.for_variant("smollm2", "l29").source("speedup") == "thresholds.toml [variants.l29]"
    assert th.for_variant("smollm2", "other").floors.avg_similarity == 0.6


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[defaults]\nmin_similary = 0.5\n", "defaults.min_similary: Extra inputs are not permitted"),
        ("[gates.x.variants.y]\nspeedup = 0\n", "gates.x.variants.y.speedup: Input should be greater than 0"),
        ("[variants.y]\nspeed = 0.9\n", "variants.y.speed: Extra inputs are not permitted"),
        ("[defaults]\nexact_match = 1.5\n", "defaults.exact_match: Input should be less than or equal to 1"),
        ("[defaults\n", "is not valid TOML"),
    ],
)
def test_a_malformed_thresholds_file_is_one_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(CompressError, match="Fix: ") as err:
        _thresholds(tmp_path, text)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_the_checked_in_thresholds_file_is_valid_and_names_only_real_variants() -> None:
    """A misspelt variant table would be valid TOML that silently applies to nothing."""
    import tomllib

    from compress.build.recipe import builtin_recipes, load_recipe

    load_thresholds(REPO / "tests/gate/thresholds.toml")
    raw = tomllib.loads((REPO / "tests/gate/thresholds.toml").read_text(encoding="utf-8"))
    recipes = {name: set(load_recipe(path).variants) for name, path in builtin_recipes().items()}
    every_gate = set(raw["variants"])
    assert every_gate and every_gate <= set().union(*recipes.values()), sorted(every_gate)
    for gate, tables in raw["gates"].items():
        if gate in recipes:  # a built-in matrix: its tables must name its variants
            assert set(tables.get("variants", {})) <= recipes[gate], (gate, sorted(tables["variants"]))


# --- failure messages -----------------------------------------------------------------------------------


def test_non_empty_fails_on_whitespace_and_shows_both_sides() -> None:
    empty = Generation(prompt="hello", text=" \n", prompt_tokens=3, output_tokens=8, finish_reason="length")
    with pytest.raises(GateFailure) as err:
        check_non_empty(variant="l29", baseline="base", prompt=PROMPTS[0], answer=empty, baseline_answer="Hi!")
    msg = str(err.value)
    assert msg.startswith("non-empty: l29 answered nothing visible to 'hello' (8 tokens generated")
    assert "l29:    ' \\n'" in msg and "base:   'Hi!'" in msg
    check_non_empty(
        variant="l29",
        baseline="base",
        prompt=PROMPTS[0],
        answer=Generation("hello", "Hi", 3, 1),
        baseline_answer=None,
    )


def test_similarity_names_the_miss_and_the_floor_source(tmp_path: Path) -> None:
    th = _thresholds(tmp_path, "[defaults]\nmin_similarity = 0.5\n").for_variant("g", "l29")
    kwargs = dict(variant="l29", baseline="base", prompt=PROMPTS[0], answer="Bye", baseline_answer="Hello")
    with pytest.raises(GateFailure) as err:
        check_similarity(**kwargs, similarity=0.2, thresholds=th)
    assert str(err.value).splitlines()[0] == "similarity: 0.200 < min 0.500 (short by 0.300) for l29 vs base on 'hello'"
    assert "floor from thresholds.toml [defaults]" in str(err.value)
    check_similarity(**kwargs, similarity=0.5, thresholds=th)  # at the floor passes


def test_variant_metrics_report_every_missed_floor_at_once(tmp_path: Path) -> None:
    th = _thresholds(tmp_path, "[defaults]\navg_similarity = 0.5\nexact_match = 0.5\n").for_variant("g", "e")
    comparison = compare_outputs(["Hello", "서울입니다.", "Because."], ["", " ", "Because."])
    with pytest.raises(GateFailure) as err:
        check_variant_metrics(
            variant="e",
            baseline="base",
            prompt_ids=[p.id for p in PROMPTS],
            comparison=comparison,
            thresholds=th,
        )
    first = str(err.value).splitlines()[0]
    assert first.startswith("e vs base: non-empty: 1/3 prompts answered (rate 0.33 < floor 1.00, short by 0.67)")
    assert "avg similarity 0.333 < floor 0.500" in first and "exact match 1/3 = 0.33 < floor 0.50" in first
    assert "no answer to: hello, ko-capital" in str(err.value)
    good = compare_outputs(["a", "b", "c"], ["a", "b", "c"])
    check_variant_metrics(variant="g", baseline="base", prompt_ids=["1", "2", "3"], comparison=good, thresholds=th)


def test_speedup_failure_shows_both_sides_rounds_and_the_ratio_range(tmp_path: Path) -> None:
    th = _thresholds(tmp_path, "[gates.g.variants.slow]\nspeedup = 0.8\n").for_variant("g", "slow")
    rounds = SpeedRounds(
        baseline=[1.18, 1.20, 1.25], candidate=[3.3, 3.4, 3.6], tokens=640, batch=10, warmup=2, mode="interleaved"
    )
    with pytest.raises(GateFailure) as err:
        check_speedup(variant="slow", baseline="base", rounds=rounds, thresholds=th)
    first = str(err.value).splitlines()[0]
    assert first == (
        "speedup 0.35x < floor 0.80x for slow vs base (median of 3 per-round ratios, range 0.35-0.36; short by 0.45)"
    )
    text = str(err.value)
    assert "base:   median 1.200 s, 533 tok/s (rounds 1.180, 1.200, 1.250 s)" in text
    assert "ratios: 0.36, 0.35, 0.35" in text
    assert "rounds interleaved with the baseline, after 2 warm-up; 10 sequences x 64 tokens each" in text
    same = SpeedRounds(baseline=[1.0, 1.1], candidate=[1.0, 1.1], tokens=64, batch=1, warmup=0, mode="interleaved")
    assert check_speedup(variant="b", baseline="base", rounds=same, thresholds=th) == 1


def test_the_speed_workload_is_fixed_length_and_cycles_the_prompts() -> None:
    work = SpeedWorkload.for_gate(["a", "b", "c"], SamplingConfig(min_tokens=8, max_tokens=64), batch=7)
    assert work.prompts == ["a", "b", "c", "a", "b", "c", "a"]
    assert work.sampling.ignore_eos and work.sampling.min_tokens == work.sampling.max_tokens == 64
    assert work.tokens == 7 * 64
    assert SpeedWorkload.for_gate(["a", "b"], SamplingConfig()).prompts == ["a", "b"]


# --- golden files ---------------------------------------------------------------------------------------


def test_golden_record_holds_answers_and_rounded_metrics_but_no_timings() -> None:
    base, cand = _run("base", ["Hello!", "서울", "Sky"]), _run("l29", ["Hello!", "서울입니다", "Blue"], [9.0])
    record = golden_record(
        gate="tiny",
        run=cand,
        prompts=PROMPTS,
        baseline="base",
        comparison=compare_outputs(base.texts, cand.texts),
    )
    assert record["outputs"]["ko-capital"]["answer"] == "서울입니다"
    assert record["outputs"]["ko-capital"]["similarity"] == round(4 / 7, 4)
    assert record["metrics"] == {
        "avg_similarity": round((1 + 4 / 7 + 0) / 3, 4),
        "exact_match": 0.3333,
        "non_empty_count": 3,
        "non_empty_rate": 1.0,
    }
    assert "9.0" not in json.dumps(record) and golden_key(cand) == "vllm-float32"
    # a GPU's goldens are its own: on an H200 2 of 30 float32 answers drifted from the CPU's at near-ties
    on_gpu = ModelRun(
        name="x", model_dir="/m/x", engine={"engine": "vllm", "dtype": "bfloat16", "device": "NVIDIA H200"}
    )
    assert golden_key(on_gpu) == "vllm-bfloat16-cuda"
    # eager CUDA kernels are not the compiled engine's: eager float32 text on the H200 differed (12-01)
    eager = replace(on_gpu, engine={**on_gpu.engine, "enforce_eager": True})
    assert golden_key(eager) == "vllm-bfloat16-cuda-eager"


def test_golden_json_is_sorted_indented_utf8_with_final_newline() -> None:
    text = GoldenJSONExtension().serialize({"b": {"z": 1, "a": "서울"}, "a": [1, 2]})
    assert text == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": {\n    "a": "서울",\n    "z": 1\n  }\n}\n'
    ext = GoldenJSONExtension()
    assert ext.matches(serialized_data=text, snapshot_data=json.dumps(json.loads(text)))  # re-indented
    assert not ext.matches(serialized_data=text, snapshot_data="{not json")


def _golden(dtype: str, answers: dict[str, str]) -> dict:
    outputs = {k: {"prompt": f"prompt {k}", "answer": a, "output_tokens": 9} for k, a in answers.items()}
    return {"gate": "tiny", "variant": "awq", "engine": "vllm", "dtype": dtype, "outputs": outputs}


# Measured on one H200 (vLLM 0.26, bf16, the same W4A16 folder): 'haiku-autumn' on 2026-11-29 in two sessions.
_H200_BF16 = (
    "What is the air? It is the air pushes back up on the Sun, and married by the plane in the air.",
    "What is the air? It is the air pushes back up on the Sun, and married by the sky.",
)
_OTHERS = {f"p{i}": f"steady answer number {i} about the sky" for i in range(9)}


@pytest.mark.parametrize("dtype, close", [("bfloat16", True), ("float16", True), ("float32", False)])
def test_a_16bit_golden_tolerates_the_drift_measured_between_two_h200_runs(dtype: str, close: bool) -> None:
    golden = _golden(dtype, {**_OTHERS, "haiku": _H200_BF16[0]})
    today = _golden(dtype, {**_OTHERS, "haiku": _H200_BF16[1]})
    ext = GoldenJSONExtension()
    assert ext.matches(serialized_data=json.dumps(today), snapshot_data=json.dumps(golden)) is close
    assert answer_drift(golden, today) is None  # close: only the dtype decides whether closeness is enough


def test_a_16bit_golden_still_catches_changed_models_and_empty_answers() -> None:
    golden = _golden("bfloat16", {**_OTHERS, "haiku": _H200_BF16[0]})
    rebuilt = _golden("bfloat16", {k: f"a different model says {k[::-1]} loudly" for k in golden["outputs"]})
    drift = answer_drift(golden, rebuilt)
    assert drift is not None and drift.startswith("answers moved from the golden ones: mean similarity 0.")
    assert not GoldenJSONExtension().matches(serialized_data=json.dumps(rebuilt), snapshot_data=json.dumps(golden))
    emptied = _golden("bfloat16", {**_OTHERS, "haiku": "   "})
    assert answer_drift(golden, emptied) == "answers became empty or non-empty: haiku"
    other = {**golden, "variant": "l29-awq"}
    assert answer_drift(golden, other) == "not the same gate, variant, engine or prompts (changed: variant)"


def test_golden_problem_names_missing_and_broken_files(tmp_path: Path) -> None:
    path = tmp_path / "l29.vllm-float32.json"
    assert "no golden file for l29 (vllm-float32)" in golden_problem(
        path, variant="l29", key="vllm-float32", updating=False
    )
    path.write_text('{"outputs": ', encoding="utf-8")
    msg = golden_problem(path, variant="l29", key="vllm-float32", updating=False)
    assert msg is not None and "is not valid JSON (Expecting value: line 1" in msg and "--snapshot-update" in msg
    assert golden_problem(path, variant="l29", key="vllm-float32", updating=True) is None
    path.write_text("{}", encoding="utf-8")
    assert golden_problem(path, variant="l29", key="vllm-float32", updating=False) is None


# --- options and session plumbing -----------------------------------------------------------------------


def test_variants_are_every_folder_but_the_baseline_and_builder_leftovers(tmp_path: Path) -> None:
    for name in ("base", "l29", "broken", ".l29.tmp-1", "awq.old-2"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert list_variants(tmp_path, "base") == ["broken", "l29"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"models_dir": "missing"}, "--gate-models-dir {tmp}/missing does not exist"),
        (
            {"baseline": "teacher"},
            "baseline 'teacher' has no folder in {tmp}/m. Fix: pass --gate-baseline with one of",
        ),
        ({"variants": "l29,l28"}, "--gate-variants names l28, which {tmp}/m does not hold. Fix: pick from: l29"),
        ({"prompts_file": "{tmp}/p.toml"}, "prompts file {tmp}/p.toml holds no prompts"),
        ({"thresholds_file": "{tmp}/none.toml"}, "thresholds file {tmp}/none.toml does not exist"),
        (
            {"report_file": "{tmp}/no/such/gate.json"},
            "report folder {tmp}/no/such does not exist. Fix: create it",
        ),
    ],
)
def test_a_gate_that_cannot_run_keeps_the_reason(tmp_path: Path, kwargs: dict, expected: str) -> None:
    (tmp_path / "m" / "base").mkdir(parents=True)
    (tmp_path / "m" / "l29").mkdir()
    (tmp_path / "p.toml").write_text("# nothing\n")
    args = {"models_dir": str(tmp_path / "m"), "rootdir": REPO}
    args.update({k: v.format(tmp=tmp_path) if k != "models_dir" else str(tmp_path / v) for k, v in kwargs.items()})
    setup = resolve_gate(**args)
    assert not setup.ready and setup.problem is not None
    assert expected.format(tmp=tmp_path) in setup.problem


def test_a_good_gate_resolves_names_and_paths(tmp_path: Path) -> None:
    for name in ("base", "l29", "awq"):
        (tmp_path / "tiny" / name).mkdir(parents=True)
    setup = resolve_gate(models_dir=str(tmp_path / "tiny"), rootdir=REPO, variants="l29,base")
    assert setup.ready and setup.config is not None
    cfg = setup.config
    assert (cfg.name, cfg.all_variants, len(setup.prompts)) == ("tiny", ("base", "l29"), 10)
    assert cfg.report_file == REPO / "reports/gate/tiny.json"
    assert junit_file_for(cfg.report_file) == REPO / "reports/gate/tiny-junit.xml"
    assert resolve_gate(models_dir=None, rootdir=REPO).config is None


def test_model_runs_survive_the_trip_through_json() -> None:
    run = _run("l29", ["a", "", "c"])
    again = run_from_dict(json.loads(json.dumps(run_to_dict(run))))
    assert again == run and again.timing is not None and again.timing.median == 0.55
    failed = ModelRun(name="x", model_dir="/m/x", status="failed", error="model folder /m/x has no config.json.")
    assert run_from_dict(run_to_dict(failed)) == failed


def test_workers_get_their_own_gpu_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("compress.gate.session.visible_gpu_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert pin_worker_gpus("gw1", 2) == "2,3"
    assert pin_worker_gpus("gw3", 1) is None  # already set by the call above: left alone
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert pin_worker_gpus("gw5", 1) == "1"  # wraps around
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert pin_worker_gpus(None, 1) is None
    monkeypatch.setattr("compress.gate.session.visible_gpu_count", lambda: 0)
    assert pin_worker_gpus("gw0", 1) is None


# --- case ids, markers, skips (a collection only: no model loads) ---------------------------------------


def _collect(*args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/gate/test_release_gate.py", "--collect-only", "-q",
         "-p", "no:cacheprovider", f"--rootdir={REPO}", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return [line for line in proc.stdout.splitlines() if "::" in line or "collected" in line or "error" in line]


def test_cases_are_named_variant_then_prompt_and_gpu_selects_only_speed_without_cuda(tmp_path: Path) -> None:
    for name in ("base", "compressed-l29", "compressed-l29-llmc-awq", ".l28.tmp-7"):
        (tmp_path / "tiny" / name).mkdir(parents=True)
    ids = [line.split("::")[1] for line in _collect("--gate-models-dir", str(tmp_path / "tiny")) if "::" in line]
    assert "test_non_empty[compressed-l29-llmc-awq-hello]" in ids
    assert "test_non_empty[base-ko-weather]" in ids and "test_golden[base]" in ids  # the baseline's own cases
    assert not any(i.startswith(("test_similarity[base", "test_speedup[base")) for i in ids)  # cannot fail
    assert "test_similarity[compressed-l29-ko-kimchi]" in ids and "test_variant_metrics[compressed-l29]" in ids
    n_cases = 10 * 3 + 10 * 2 + 2 + 2 + 3 + 2 + 2  # non-empty x3, similarity x2, metrics x2, speedup x2, golden x3,
    # fidelity x2, task accuracy x2
    assert len(ids) == n_cases and not any("l28" in i for i in ids)
    import torch

    gpu = [line for line in _collect("--gate-models-dir", str(tmp_path / "tiny"), "-m", "gpu") if "::" in line]
    assert len(gpu) == (n_cases if torch.cuda.is_available() else 2), gpu  # CUDA: the whole gate; else speed


class _FakeEngine(FakeEngine):
    """Stands in for vLLM: seconds = the folder's slowness x a machine drift that changes every round."""

    calls = 0
    slowness: ClassVar[dict[str, float]] = {"base": 1.0, "good": 1.0, "slow": 1.3}

    def seconds(self, prompts: list[str], sampling: SamplingConfig) -> float:
        drift = 1.0 + 0.4 * ((_FakeEngine.calls // 2) % 4)  # the machine's mood: +0..120 %, per timed round
        _FakeEngine.calls += int(sampling.ignore_eos)  # only the speed workload's rounds advance the clock
        return self.slowness[self.folder] * drift


def test_interleaved_speed_rounds_cancel_drift_and_load_each_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compress.evaluation.run as run_module
    import compress.gate.session as session_module

    monkeypatch.setattr(run_module, "open_engine", _FakeEngine)
    monkeypatch.setattr(session_module, "open_engine", _FakeEngine)
    for name in ("base", "good", "slow"):
        (tmp_path / "m" / name).mkdir(parents=True)
    setup = resolve_gate(models_dir=str(tmp_path / "m"), rootdir=REPO)
    gate = GateSession(setup, measure_speed=True)
    assert gate.baseline().texts[0].startswith("answer ")  # answers from the resident timing reference
    good, slow = gate.speed("good"), gate.speed("slow")
    assert (good.mode, len(good.baseline), good.warmup) == ("interleaved", 8, 2)
    assert good.speedup == pytest.approx(1.0)  # drift moved every round's seconds by up to 120 %
    assert slow.speedup == pytest.approx(1 / 1.3)
    assert max(good.candidate) / min(good.candidate) > 2  # ... so unpaired medians would be noise
    th = setup.thresholds.for_variant(setup.config.name, "good")
    with pytest.raises(GateFailure, match=r"speedup 0\.77x < floor 0\.80x for slow vs base"):
        check_speedup(variant="slow", baseline="base", rounds=slow, thresholds=_floor(tmp_path, 0.8, "slow"))
    assert check_speedup(variant="good", baseline="base", rounds=good, thresholds=th) >= 0.99
    loads = [(x["variant"], x.get("role")) for x in gate.loads]
    assert loads == [("base", "timing"), ("good", None), ("slow", None)]  # each model loaded once
    assert gate.workload.sampling.ignore_eos and gate.runs["good"].timing.runs == good.candidate
    gate.close()


PROBE = """
import os
import pytest
from compress.gate import cases

def pytest_generate_tests(metafunc):
    cases.parametrize(metafunc)

@pytest.mark.gate(baseline=True)
def test_probe(variant, prompt):
    with open(os.environ["PROBE_OUT"] + "-" + os.environ["PYTEST_XDIST_WORKER"], "a") as f:
        f.write(variant + "\\n")
"""


def test_under_xdist_each_variant_stays_on_one_worker(tmp_path: Path) -> None:
    """``-n 2`` alone: the gate's scheduler keeps a variant's cases on one worker, so it is loaded once. The
    old way (switching the run to ``--dist loadgroup``) never reached the workers, and on the H200 two workers
    loaded compressed-l29 at once. About 15 s here (two xdist workers start)."""
    for name in ("base", "compressed-l29", "base-llmc-awq"):
        (tmp_path / "tiny" / name).mkdir(parents=True)
    (tmp_path / "test_probe.py").write_text(PROBE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | {"PROBE_OUT": str(tmp_path / "seen")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "test_probe.py", "-n", "2", "-q", "-p", "compress.gate.plugin",
         "-p", "no:cacheprovider", f"--gate-models-dir={tmp_path / 'tiny'}",
         f"--gate-thresholds={REPO / 'tests/gate/thresholds.toml'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    workers = {f.name: set(f.read_text().split()) for f in tmp_path.glob("seen-gw*")}
    owners = {v: [w for w, seen in workers.items() if v in seen] for v in ("base", "compressed-l29", "base-llmc-awq")}
    assert all(len(w) == 1 for w in owners.values()), owners
    assert len(workers) == 2, workers  # and both workers had work


def test_a_case_s_scope_is_its_variant() -> None:
    ids = variant_ids(("base", "base-distilled", "compressed-l29"), ["hello", "ko-capital"])
    node = "tests/gate/test_release_gate.py::test_{}"
    assert scope_of(node.format("non_empty[base-distilled-hello]"), ids) == "base-distilled"
    assert scope_of(node.format("non_empty[base-hello]"), ids) == "base"
    assert scope_of(node.format("golden[compressed-l29]") + "@compressed-l29", ids) == "compressed-l29"
    assert scope_of(node.format("other"), ids) == node.format("other")  # not a gate case: its own scope
    assert scope_of(node.format("x[unknown-id]"), ids) == node.format("x[unknown-id]")


class _KwargsEngine(_FakeEngine):
    opened: ClassVar[list[dict]] = []

    def __init__(self, model_dir: object, **kwargs: object) -> None:
        super().__init__(model_dir, **kwargs)
        _KwargsEngine.opened.append(kwargs)


def test_workers_sharing_a_gpu_give_vllm_a_fixed_kv_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM's memory profiling counts other processes' GPU memory as its own: engines of workers sharing a GPU
    get a fixed KV cache instead, so one worker's engine starting or closing cannot fail another's start."""
    monkeypatch.setattr("compress.gate.session.visible_gpu_count", lambda: 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert workers_share_a_gpu(2) and not workers_share_a_gpu(1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # the user's list counts, not /dev
    assert not workers_share_a_gpu(2) and workers_share_a_gpu(2, tensor_parallel_size=2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr("compress.gate.session.visible_gpu_count", lambda: 0)
    assert not workers_share_a_gpu(4)  # no GPU: nothing to share

    import compress.evaluation.run as run_module

    monkeypatch.setattr(run_module, "open_engine", _KwargsEngine)
    for name in ("base", "good"):
        (tmp_path / "m" / name).mkdir(parents=True)
    setup = resolve_gate(models_dir=str(tmp_path / "m"), rootdir=REPO)
    _KwargsEngine.opened = []
    GateSession(setup, measure_speed=False, shares_gpu=True).run("good")
    GateSession(setup, measure_speed=False).run("good")
    assert [k.get("kv_cache_memory_bytes") for k in _KwargsEngine.opened] == [SHARED_KV_CACHE_BYTES, None]
    kwargs = llm_kwargs("m", dtype="float32", cuda=True, max_model_len=64, kv_cache_memory_bytes=SHARED_KV_CACHE_BYTES)
    assert kwargs["kv_cache_memory_bytes"] == SHARED_KV_CACHE_BYTES
    assert "kv_cache_memory_bytes" not in llm_kwargs("m", dtype="float32", cuda=True, max_model_len=64)


class _DtypeEngine(_FakeEngine):
    """A 4-bit folder runs in bf16 by default, and bf16 takes 0.6 of float32's time on this fake machine."""

    def __init__(self, model_dir: object, **kwargs: object) -> None:
        super().__init__(model_dir, **kwargs)
        self.dtype = str(kwargs.get("dtype") or ("bf16" if "quant" in str(model_dir) else "f32"))

    def seconds(self, prompts: list[str], sampling: SamplingConfig) -> float:
        return super().seconds(prompts, sampling) * (0.6 if self.dtype == "bf16" else 1.0)


def test_a_bf16_variant_is_timed_against_the_baseline_loaded_in_bf16_not_float32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compress.evaluation.run as run_module
    import compress.gate.session as session_module

    monkeypatch.setattr(run_module, "open_engine", _DtypeEngine)
    monkeypatch.setattr(session_module, "open_engine", _DtypeEngine)
    _DtypeEngine.slowness = {"base": 1.0, "good": 1.0, "good-quant": 1.0, "other-quant": 1.0}
    for name in _DtypeEngine.slowness:
        (tmp_path / "m" / name).mkdir(parents=True)
    gate = GateSession(resolve_gate(models_dir=str(tmp_path / "m"), rootdir=REPO), measure_speed=True)
    speeds = {v: gate.speed(v) for v in ("good-quant", "good", "other-quant")}
    assert {v: round(r.speedup, 3) for v, r in speeds.items()} == {"good-quant": 1.0, "good": 1.0, "other-quant": 1.0}
    assert [r.dtype for r in speeds.values()] == ["bf16", "f32", "bf16"]  # float32 vs bf16 here would say 1.67x
    assert gate.baseline().texts and gate.runs["base"].engine == {"engine": "fake", "dtype": "f32"}
    timing = [(x["variant"], x.get("as")) for x in gate.loads if x.get("role") == "timing"]
    assert timing == [("base", "default"), ("base", "fake-bf16")]  # the gate's own first, each loaded once
    settings = Settings(engine="auto", dtype=None, warmup=2, repeats=8, tensor_parallel_size=1)
    runs = [gate.run(v) for v in speeds]
    plain = build_report(gate.baseline(), runs, gate.prompts, gate.config.sampling, settings)
    assert round(plain.models["good-quant"].speedup, 2) == 1.67 and plain.models["good-quant"].comparable is False
    report = with_speed_verdicts(plain, gate.runs)  # the gate's report shows its own verdicts
    assert {v: round(report.models[v].speedup, 3) for v in speeds} == {v: 1.0 for v in speeds}
    gate.close()


def test_speed_rounds_refuse_engines_at_different_dtypes() -> None:
    f32, bf16 = _DtypeEngine("m/base"), _DtypeEngine("m/base", dtype="bf16")
    workload = SpeedWorkload.for_gate(["hi"], SamplingConfig())
    with pytest.raises(ValueError, match="fake bf16 against a fake f32 baseline measures the engine or the dtype"):
        interleaved_rounds(f32, bf16, workload, rounds=1, warmup=0)


def _floor(tmp_path: Path, speedup: float, variant: str):
    return _thresholds(tmp_path, f"[gates.g.variants.{variant}]\nspeedup = {speedup}\n").for_variant("g", variant)


def test_the_baseline_cache_serves_later_runs_until_the_baseline_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compress.evaluation.run as run_module
    import compress.gate.session as session_module

    monkeypatch.setattr(run_module, "open_engine", _FakeEngine)
    monkeypatch.setattr(session_module, "open_engine", _FakeEngine)
    _FakeEngine.slowness = {"base": 1.0, "good": 1.0, "slow": 1.3}
    for name in ("base", "good", "slow"):
        (tmp_path / "m" / name).mkdir(parents=True)
        (tmp_path / "m" / name / "model.safetensors").write_bytes(b"weights of " + name.encode())
    cache = tmp_path / "cache"

    def gate_over(variants: str) -> GateSession:
        setup = resolve_gate(
            models_dir=str(tmp_path / "m"), variants=variants, baseline_cache=str(cache), rootdir=REPO
        )
        return GateSession(setup, measure_speed=False, shared_dir=setup.config.baseline_cache)

    first = gate_over("good")
    first.baseline(), first.run("good")
    assert [x["variant"] for x in first.loads] == ["base", "good"] and len(list(cache.glob("*.json"))) == 1
    second = gate_over("slow")  # another job of the same release: the baseline comes from the cache
    assert second.baseline().texts == first.baseline().texts
    second.run("slow")
    assert [x["variant"] for x in second.loads] == ["slow"]
    (tmp_path / "m" / "base" / "model.safetensors").write_bytes(b"rebuilt")  # a rebuilt baseline: measured again
    third = gate_over("slow")
    third.baseline()
    assert [x["variant"] for x in third.loads] == ["base"] and len(list(cache.glob("*.json"))) == 2
