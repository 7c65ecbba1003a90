"""`python -m compress bench` and `bench overhead` through the real vLLM CPU engine, at the tiny shape.

The CPU has no 4-bit kernel, so W4A16 variants must be skipped with the reason; the timings themselves are
noise here (shared 2-core CPU) and are not asserted, only their structure: every variant made exactly the
tokens asked for, and every speedup is a ratio from the same run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from compress.bench import benchmark as bench
from compress.bench import overhead
from compress.cli import main
from compress.core.errors import CompressError
from compress.local_models.broken import link_copy
from compress.local_models.registry import local_model

MAX_TOKENS = 8
TINY = ["bench", "--shape", "tiny", "--max-tokens", str(MAX_TOKENS), "--batch-prompts", "4"]


@pytest.fixture(scope="module")
def interleaved(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    code = main([*TINY, "--variants", "base,l29,w4a16", "--rounds", "2", "--warmup", "1", "--out", str(out)])
    return {"code": code, "result": json.loads(out.read_text())}


def test_interleaved_run_measures_all_runnable_variants(interleaved: dict, capsys) -> None:
    assert interleaved["code"] == 0
    result = interleaved["result"]
    assert result["mode"] == "interleaved"
    model = result["models"]["exaone4-1.2b"]
    assert model["reference"] == "base"
    for name in ("base", "l29"):
        v = model["variants"][name]
        assert v["status"] == "ok" and v["load_seconds"] > 0
        for workload, prompts in (("batch", 4), ("single", 1)):
            w = v[workload]
            assert len(w["runs"]) == 2 and w["tokens_as_expected"]
            assert w["output_tokens"] == prompts * MAX_TOKENS
            assert w["ms_per_step"]["best"] <= w["ms_per_step"]["median"]
    speed = model["variants"]["l29"]["batch"]["speedup"]
    assert speed["rounds"]["n"] == 2
    base_runs, l29_runs = (model["variants"][n]["batch"]["runs"] for n in ("base", "l29"))
    ratios = sorted(b / c for b, c in zip(base_runs, l29_runs, strict=True))
    assert [speed["rounds"]["min"], speed["rounds"]["max"]] == pytest.approx(ratios)
    assert speed["paired"] == pytest.approx(sum(ratios) / 2)  # median of two per-round ratios
    assert "speedup" not in model["variants"]["base"]["batch"]


def test_w4a16_is_skipped_on_the_cpu_with_the_reason(interleaved: dict) -> None:
    w4 = interleaved["result"]["models"]["exaone4-1.2b"]["variants"]["w4a16"]
    assert w4["status"] == "skipped" and "cpu_gemm_wna16" in w4["reason"]
    assert w4["limit"]["speedup_bound"] > 1.5  # its bytes still count: 4-bit weights read less


def test_result_names_device_versions_and_the_limit(interleaved: dict) -> None:
    result = interleaved["result"]
    assert result["device"]["device"] == "cpu" and result["device"]["versions"]["torch"]
    l29 = result["models"]["exaone4-1.2b"]["variants"]["l29"]["limit"]
    assert 1.0 < l29["speedup_bound"] < 1.5 and l29["floor_ms_per_step"] > 0
    assert "W4A16" in result["limit_formula"]


def test_a_variant_that_cannot_join_the_others_is_retried_alone(tmp_path: Path, monkeypatch) -> None:
    """What happens when vLLM cannot hold one more engine in this process: that variant runs in its own
    process (the worker is a fresh interpreter, so the patch below does not reach it) and says so."""
    real = bench.open_bench_engine

    def refuse_l29(folder: Path, settings: bench.BenchSettings):
        if folder.name == "l29":
            raise RuntimeError("no room for another engine")
        return real(folder, settings)

    monkeypatch.setattr(bench, "open_bench_engine", refuse_l29)
    out = tmp_path / "retry.json"
    args = ["--variants", "base,l29", "--rounds", "1", "--warmup", "0", "--out", str(out)]
    assert main([*TINY, *args]) == 0
    result = json.loads(out.read_text())
    model = result["models"]["exaone4-1.2b"]
    assert model["mode"] == "interleaved+sequential"
    assert model["variants"]["base"]["mode"] == "interleaved"
    l29 = model["variants"]["l29"]
    assert l29["status"] == "ok" and l29["mode"] == "sequential" and l29["batch"]["tokens_as_expected"]
    assert "| l29 (alone) |" in bench.markdown(result)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variants", "base,l28"], "unknown variants l28"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--gpu-memory-utilization", "1.5"], "is not in (0, 1]"),
    ],
)
def test_bad_arguments_fail_before_any_load(args: list[str], message: str, capsys) -> None:
    assert main([*TINY, *args]) == 2
    assert message in capsys.readouterr().err


# --- bench overhead -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-variant gate folder made of hard links to the tiny EXAONE-4 (no build needed)."""
    source = local_model("tiny-exaone4")
    root = tmp_path_factory.mktemp("gate-models")
    link_copy(source, root / "base")
    link_copy(source, root / "copy")
    return root


def test_overhead_bare_script_mirrors_the_gate_engine(models_dir: Path) -> None:
    settings = overhead.OverheadSettings(models_dir=models_dir)
    plan = overhead.resolve(settings, cuda=False)
    assert (plan.names, plan.mode, plan.warmup, plan.repeats) == (["base", "copy"], "plain", 0, 1)  # CPU defaults
    spec = overhead.bare_spec(settings, plan)
    kwargs = spec["variants"][0]["llm_kwargs"]
    assert kwargs["dtype"] == "float32" and kwargs["seed"] == 0 and kwargs["enforce_eager"] is True
    assert kwargs["max_model_len"] == 1024 and len(spec["prompts"]) == 10 and "gpu_memory_utilization" not in kwargs
    assert spec["sampling"] == {"temperature": 0.0, "min_tokens": 8, "max_tokens": 64, "seed": 0, "ignore_eos": False}
    cpu = overhead.gate_command(settings, plan, models_dir)
    assert "gpu" not in cpu and cpu[cpu.index("--gate-repeats") + 1] == "1"


def test_overhead_on_cuda_mirrors_the_speed_rounds(models_dir: Path) -> None:
    """Planned as on a CUDA host (nothing runs): the gate's -m gpu selection and its speed session."""
    settings = overhead.OverheadSettings(models_dir=models_dir, speed_batch=12)
    plan = overhead.resolve(settings, cuda=True)
    assert (plan.mode, plan.warmup, plan.repeats) == ("speed", 2, 8)
    spec = overhead.bare_spec(settings, plan)
    assert spec["variants"][1]["llm_kwargs"]["gpu_memory_utilization"] == 0.28
    assert spec["variants"][1]["llm_kwargs"]["enforce_eager"] is False
    assert len(spec["speed"]["prompts"]) == 12 and spec["speed"]["sampling"]["ignore_eos"] is True
    assert spec["speed"]["sampling"]["min_tokens"] == spec["speed"]["sampling"]["max_tokens"] == 64
    gpu = overhead.gate_command(settings, plan, models_dir)
    assert gpu[4:8] == ["-m", "gpu", "-k", "not test_fidelity and not test_task_accuracy"]  # work bare does not do
    assert gpu[gpu.index("--gate-speed-batch") + 1] == "12" and gpu[gpu.index("--gate-warmup") + 1] == "2"
    plain = overhead.resolve(replace(settings, speed=False), cuda=True)
    expected = ["-m", "gpu", "-k", "not test_fidelity and not test_task_accuracy and not test_speedup"]
    assert overhead.gate_command(settings, plain, models_dir)[4:8] == expected
    with pytest.raises(CompressError, match="--speed needs CUDA"):
        overhead.resolve(replace(settings, speed=True), cuda=False)


def test_overhead_rejects_unknown_variants(models_dir: Path) -> None:
    settings = overhead.OverheadSettings(models_dir=models_dir, variants=("nope",))
    with pytest.raises(CompressError, match="nope"):
        overhead.resolve(settings, cuda=False)


def test_overhead_times_gate_and_bare_script(models_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "overhead.json"
    args = ["bench", "overhead", "--models-dir", str(models_dir), "--variants", "base", "--no-prime"]
    goldens = f"--pytest-args=--gate-golden-dir={tmp_path / 'golden'} --snapshot-update"  # a new gate has none yet
    assert main([*args, goldens, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["variants"] == ["base"]
    assert len(result["bare_seconds"]) == 1 and len(result["gate_seconds"]) == 1
    assert result["gate_exit_codes"] == [0], result["gate_summary"]
    assert result["ratio_of_medians"] == pytest.approx(result["gate_seconds"][0] / result["bare_seconds"][0])
    assert result["bare_breakdown"][0]["variants"][0]["output_tokens_last_batch"] > 0
    assert "overhead ratio gate/bare" in capsys.readouterr().out
