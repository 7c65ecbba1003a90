"""AWQ W4A16: compressed-tensors folders that HF loads, the EXAONE mappings, and the CPU workaround."""

from __future__ import annotations

import json

import pytest
import torch

from compress.builders.awq import check_group_size, resolve_mappings
from compress.core.errors import CompressError

AWQ_VARIANTS = [
    "base-llmc-awq",
    "compressed-l29-llmc-awq",
    "base-distilled-llmc-awq",
    "compressed-l29-distilled-llmc-awq",
]


@pytest.mark.parametrize("variant", AWQ_VARIANTS)
def test_awq_folder_carries_the_compressed_tensors_config(tiny_matrix, variant: str) -> None:
    config = json.loads((tiny_matrix[variant] / "config.json").read_text())
    q = config["quantization_config"]
    assert q["quant_method"] == "compressed-tensors"
    assert q["format"] == "pack-quantized"
    weights = q["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["strategy"], weights["group_size"]) == (4, "group", 128)
    assert q["config_groups"]["group_0"]["input_activations"] is None  # A16: activations stay 16-bit
    assert "lm_head" in q["ignore"]
    assert config["num_hidden_layers"] == (29 if "l29" in variant else 30)
    result = tiny_matrix.manifest(variant)["steps"][0]["result"]
    assert result["mappings"] == "llmcompressor AWQ_MAPPING_REGISTRY['Exaone4ForCausalLM']"
    assert result["cpu_pin_memory_workaround"] is (not torch.accelerator.is_available())


@pytest.mark.parametrize("variant", ["base-llmc-awq", "compressed-l29-distilled-llmc-awq"])
def test_awq_folder_loads_in_hf_and_answers(tiny_matrix, variant: str) -> None:
    from compress.core.prompts import load_prompts
    from compress.engines import SamplingConfig, open_engine

    prompts = [p.text for p in load_prompts()][:3]
    with open_engine(tiny_matrix[variant], engine="hf", dtype="float32") as engine:
        texts = engine.chat(prompts, SamplingConfig(max_tokens=16)).texts
    assert all(t.strip() for t in texts), texts


def test_llm_compressor_has_its_own_exaone4_mapping() -> None:
    from llmcompressor.modifiers.transform.awq import AWQ_MAPPING_REGISTRY

    pairs = [(m.smooth_layer, tuple(m.balance_layers)) for m in AWQ_MAPPING_REGISTRY["Exaone4ForCausalLM"]]
    # EXAONE 4 is post-norm: no norm -> q/k/v or norm -> gate/up mappings.
    assert pairs == [("re:.*v_proj$", ("re:.*o_proj$",)), ("re:.*up_proj$", ("re:.*down_proj$",))]
    assert "ExaoneForCausalLM" not in AWQ_MAPPING_REGISTRY  # EXAONE 3.x: none upstream, hence the Llama layout


def _tiny(kind: str):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=2, num_key_value_heads=1))
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2))


def test_mappings_resolve_once_per_layer_or_awq_refuses() -> None:
    """llm-compressor falls back to the Llama names for a class it does not know and, where they match nothing,
    smooths nothing without a word (round-to-nearest under AWQ's name). The builder refuses instead."""
    mappings, source, skipped = resolve_mappings(_tiny("llama"))
    assert source == "llmcompressor AWQ_MAPPING_REGISTRY['LlamaForCausalLM']" and len(mappings) == 4
    # 2 heads, 1 KV head: v_proj is half as wide as o_proj's input, and AWQ skips that pair by design
    assert skipped == ["re:.*v_proj$ -> re:.*o_proj$ in 2 of 2 layers (grouped-query attention: shapes differ)"]
    with pytest.raises(CompressError) as err:
        resolve_mappings(_tiny("gpt2"))
    text = str(err.value)
    assert "AWQ has no mapping that fits GPT2LMHeadModel" in text and "no registry entry" in text
    assert "re:.*input_layernorm$ -> re:.*q_proj$, re:.*k_proj$, re:.*v_proj$ matches 0 of 2 decoder layers" in text


def test_awq_fails_before_calibrating_a_model_no_mapping_fits(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from compress.builders import awq
    from compress.builders.common import BuildContext

    src = tmp_path / "gpt2"
    _tiny("gpt2").save_pretrained(src)

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibration data was asked for: AWQ went on with a mapping that does not fit")

    monkeypatch.setattr(awq, "base_answers", no_calibration)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CompressError, match="AWQ has no mapping that fits GPT2LMHeadModel"):
        awq.run(src, out, awq.AwqParams(group_size=32), BuildContext(base_dir=src))
    assert not any(out.iterdir())


def test_unknown_architecture_and_bad_group_size_fail_with_a_fix() -> None:
    model = torch.nn.Sequential()
    model.add_module("q_proj", torch.nn.Linear(576, 64))
    model.add_module("lm_head", torch.nn.Linear(576, 100))
    with pytest.raises(
        CompressError, match=r"group_size 128 does not divide q_proj's input width 576.*\[64, 32, 16\]"
    ):
        check_group_size(model, 128, ("lm_head",))
    check_group_size(model, 64, ("lm_head",))


def test_cpu_workaround_is_needed_here_and_scoped() -> None:
    """Pins the upstream bug: on a host without an accelerator, llm-compressor's pin_memory crashes. If this
    test fails because the call no longer raises, upstream fixed it: delete builders/cpu_workaround.py."""
    from llmcompressor.pipelines.cache import IntermediatesCache

    from compress.builders.cpu_workaround import cpu_only_pin_memory_fix

    if torch.accelerator.is_available():
        with cpu_only_pin_memory_fix() as patched:
            assert patched is False
        return
    original = IntermediatesCache.pin_memory
    cache = IntermediatesCache.from_dataloader([{"x": torch.ones(2, 2)}])
    with pytest.raises(RuntimeError):
        cache.pin_memory(0)
    with cpu_only_pin_memory_fix() as patched:
        assert patched is True
        cache.pin_memory(0)  # no-op, no crash
    assert IntermediatesCache.pin_memory is original
