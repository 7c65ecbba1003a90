"""AWQ W4A16: compressed-tensors folders that HF loads, the EXAONE mappings, and the CPU workaround."""

from __future__ import annotations

import json
import re

import pytest
import torch

from compress.builders.awq import EXAONE3_MAPPINGS, check_group_size, mappings_for
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
    assert mappings_for("Exaone4ForCausalLM") == (
        None,
        "llmcompressor AWQ_MAPPING_REGISTRY['Exaone4ForCausalLM']",
    )


def test_exaone3_mapping_matches_its_modules() -> None:
    """EXAONE 3.x module names (remote code): each smooth layer and its balance layers exist, once a layer."""
    layer = "transformer.h.7"
    modules = [
        f"{layer}.ln_1",
        f"{layer}.attn.attention.q_proj",
        f"{layer}.attn.attention.k_proj",
        f"{layer}.attn.attention.v_proj",
        f"{layer}.attn.attention.out_proj",
        f"{layer}.ln_2",
        f"{layer}.mlp.c_fc_0",
        f"{layer}.mlp.c_fc_1",
        f"{layer}.mlp.c_proj",
        "transformer.ln_f",
        "lm_head",
    ]

    def matches(pattern: str) -> list[str]:
        return [m for m in modules if re.match(pattern.removeprefix("re:"), m)]

    expected = {
        "ln_1": ["q_proj", "k_proj", "v_proj"],
        "v_proj": ["out_proj"],
        "ln_2": ["c_fc_0", "c_fc_1"],
        "c_fc_1": ["c_proj"],
    }
    assert len(EXAONE3_MAPPINGS) == len(expected)
    for smooth, balance in EXAONE3_MAPPINGS:
        (smooth_name,) = matches(smooth)
        balanced = [name for pattern in balance for name in matches(pattern)]
        assert [b.rsplit(".", 1)[1] for b in balanced] == expected[smooth_name.rsplit(".", 1)[1]]
    mappings, source = mappings_for("ExaoneForCausalLM")
    assert source.endswith("EXAONE3_MAPPINGS") and len(mappings) == 4


def test_unknown_architecture_and_bad_group_size_fail_with_a_fix() -> None:
    with pytest.raises(CompressError, match="no mapping for architecture GPT2LMHeadModel"):
        mappings_for("GPT2LMHeadModel")
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
