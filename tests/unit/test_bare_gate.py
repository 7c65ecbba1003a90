"""The bare vLLM script (the overhead's yardstick) does the gate's model work: pinned with a fake ``vllm``."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from compress.bench import bare_gate


class _FakeLLM:
    made: list[dict] = []  # noqa: RUF012 - a log the test reads
    chats: list[tuple[str, str, int]] = []  # noqa: RUF012

    def __init__(self, **kwargs: object) -> None:
        _FakeLLM.made.append(kwargs)
        self.kwargs = kwargs
        self.llm_engine = types.SimpleNamespace(engine_core=None)

    def chat(self, conversations: list, params: dict, use_tqdm: bool = False) -> list:
        _FakeLLM.chats.append((str(self.kwargs["model"]), str(self.kwargs["dtype"]), len(conversations)))
        token_ids = [0] * params["max_tokens"]
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=token_ids)]) for _ in conversations]


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> type[_FakeLLM]:
    module = types.ModuleType("vllm")
    module.LLM = _FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    _FakeLLM.made, _FakeLLM.chats = [], []
    return _FakeLLM


def _spec(mode: str) -> dict:
    def variant(name: str, dtype: str) -> dict:
        return {"name": name, "llm_kwargs": {"model": name, "dtype": dtype}}

    return {
        "mode": mode,
        "variants": [variant("base", "float32"), variant("l29", "float32"), variant("awq", "bfloat16"),
                     variant("l29-awq", "bfloat16")],
        "prompts": ["a", "b"],
        "sampling": {"max_tokens": 4},
        "warmup": 1,
        "repeats": 2,
        "speed": {"prompts": ["a", "b", "a"], "sampling": {"max_tokens": 8}},
    }  # fmt: skip


def _run(tmp_path: Path, mode: str) -> dict:
    spec, out = tmp_path / "spec.json", tmp_path / "out.json"
    spec.write_text(json.dumps(_spec(mode)))
    assert bare_gate.main(str(spec), str(out)) == 0
    return json.loads(out.read_text())


def test_speed_mode_times_each_variant_against_the_baseline_at_its_dtype(tmp_path: Path, fake_vllm) -> None:
    record = _run(tmp_path, "speed")
    assert [(m["model"], m["dtype"]) for m in fake_vllm.made] == [
        ("base", "float32"), ("l29", "float32"), ("base", "bfloat16"), ("awq", "bfloat16"), ("l29-awq", "bfloat16"),
    ]  # fmt: skip
    rounds = [c for c in fake_vllm.chats if c[2] == 3]  # the speed workload's batch
    assert rounds.count(("base", "bfloat16", 3)) == 6  # (warm-up 1 + repeats 2) x the two bf16 variants
    assert rounds.count(("base", "float32", 3)) == 3 and len(rounds) == 18
    assert [v.get("role") for v in record["variants"]].count("timing reference in bfloat16") == 1


def test_plain_mode_loads_each_variant_once_and_chats_warmup_plus_repeats(tmp_path: Path, fake_vllm) -> None:
    record = _run(tmp_path, "plain")
    assert [m["model"] for m in fake_vllm.made] == ["base", "l29", "awq", "l29-awq"]
    assert len(fake_vllm.chats) == 4 * 3 and all(v["output_tokens_last_batch"] == 8 for v in record["variants"])
