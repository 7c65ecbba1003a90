"""EXAONE 3.x <-> Llama layout: every name maps both ways, configs come back exactly, folders round-trip
byte for byte, and the config class lets transformers read ``model_type: exaone`` without remote code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from compress.core.errors import CompressError
from compress.folders import exaone3

# EXAONE-3.5-2.4B-Instruct's config.json keys (values scaled down), as its configuration class writes them.
EXAONE35 = {
    "activation_function": "silu",
    "architectures": ["ExaoneForCausalLM"],
    "attention_dropout": 0.0,
    "auto_map": {
        "AutoConfig": "configuration_exaone.ExaoneConfig",
        "AutoModelForCausalLM": "modeling_exaone.ExaoneForCausalLM",
    },
    "bos_token_id": 1,
    "embed_dropout": 0.0,
    "eos_token_id": 361,
    "hidden_size": 128,
    "initializer_range": 0.02,
    "intermediate_size": 256,
    "layer_norm_epsilon": 1e-05,
    "max_position_embeddings": 32768,
    "model_type": "exaone",
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "num_layers": 3,
    "pad_token_id": 0,
    "rope_scaling": {
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0",
    "use_cache": True,
    "vocab_size": 512,
}
LAYER = [
    ("ln_1.weight", "input_layernorm.weight"),
    ("attn.attention.q_proj.weight", "self_attn.q_proj.weight"),
    ("attn.attention.k_proj.weight", "self_attn.k_proj.weight"),
    ("attn.attention.v_proj.weight", "self_attn.v_proj.weight"),
    ("attn.attention.out_proj.weight", "self_attn.o_proj.weight"),
    ("ln_2.weight", "post_attention_layernorm.weight"),
    ("mlp.c_fc_0.weight", "mlp.gate_proj.weight"),
    ("mlp.c_fc_1.weight", "mlp.up_proj.weight"),
    ("mlp.c_proj.weight", "mlp.down_proj.weight"),
]


def test_every_name_maps_both_ways() -> None:
    for ex, ll in LAYER:
        assert exaone3.to_llama_key(f"transformer.h.17.{ex}") == f"model.layers.17.{ll}"
        assert exaone3.to_exaone3_key(f"model.layers.17.{ll}") == f"transformer.h.17.{ex}"
    for ex, ll in [
        ("transformer.wte.weight", "model.embed_tokens.weight"),
        ("transformer.ln_f.weight", "model.norm.weight"),
        ("lm_head.weight", "lm_head.weight"),
    ]:
        assert exaone3.to_llama_key(ex) == ll and exaone3.to_exaone3_key(ll) == ex
    # compressed-tensors' 4-bit names keep their suffix
    assert (
        exaone3.to_exaone3_key("model.layers.2.mlp.up_proj.weight_packed") == "transformer.h.2.mlp.c_fc_1.weight_packed"
    )
    assert exaone3.to_llama_key("transformer.h.0.attn.attention.bogus.weight") is None
    assert exaone3.to_llama_key("transformer.h.0.ln_10.weight") is None  # a prefix, not a module name


def test_hf_key_mapping_agrees_with_the_renames(tmp_path: Path) -> None:
    """The on-load mapping (HF's key_mapping regexes) and the folder conversion are two spellings of one table."""
    (tmp_path / "config.json").write_text(json.dumps(EXAONE35))
    mapping = exaone3.hf_load_kwargs(tmp_path)["key_mapping"]
    keys = ["transformer.wte.weight", "transformer.ln_f.weight"] + [
        f"transformer.h.{i}.{e}" for i in (0, 2) for e, _ in LAYER
    ]
    for key in keys:
        mapped = key
        for pattern, replacement in mapping.items():
            mapped = re.sub(pattern, replacement, mapped)
        assert mapped == exaone3.to_llama_key(key), key


def test_config_round_trips_exactly() -> None:
    llama = exaone3.to_llama_config(EXAONE35)
    assert llama["architectures"] == ["LlamaForCausalLM"] and llama["model_type"] == "llama"
    assert (llama["num_hidden_layers"], llama["rms_norm_eps"], llama["hidden_act"], llama["head_dim"]) == (
        3,
        1e-5,
        "silu",
        64,
    )
    assert llama["rope_scaling"] == EXAONE35["rope_scaling"] and llama["tie_word_embeddings"] is True
    assert "auto_map" not in llama and "embed_dropout" not in llama
    assert exaone3.to_exaone3_config(llama) == EXAONE35
    both = {**EXAONE35, "num_hidden_layers": 3}  # some writers keep both names
    back = exaone3.to_exaone3_config({**exaone3.to_llama_config(both), "num_hidden_layers": 2})  # then pruned
    assert back["num_layers"] == back["num_hidden_layers"] == 2


def test_a_config_saved_by_transformers_5_goes_back_to_the_exaone_form() -> None:
    """A model trained or quantized here is saved by transformers 5 (rope_parameters, dtype): the EXAONE config
    gets rope_theta / rope_scaling back, and its own keys from the source config (like=)."""
    saved = {
        k: v
        for k, v in exaone3.to_llama_config(EXAONE35).items()
        if k not in ("rope_theta", "rope_scaling", exaone3.STASH)
    }
    saved["rope_parameters"] = {**EXAONE35["rope_scaling"], "rope_theta": 1000000.0}
    saved[exaone3.STASH] = exaone3.to_llama_config(EXAONE35)[exaone3.STASH]
    back = exaone3.to_exaone3_config(saved)
    assert back["rope_theta"] == 1000000.0 and back["rope_scaling"] == EXAONE35["rope_scaling"]
    assert back["auto_map"] == EXAONE35["auto_map"] and back["num_layers"] == 3
    assert "rope_parameters" not in back and "attention_bias" not in back


@pytest.mark.parametrize(
    ("key", "value", "match"), [("activation_function", "gelu", "only silu"), ("bias", True, "bias=true")]
)
def test_a_config_that_is_not_the_llama_block_is_refused(key: str, value: object, match: str) -> None:
    with pytest.raises(CompressError, match=match):
        exaone3.to_llama_config({**EXAONE35, key: value})


def _exaone_folder(folder: Path, extra: dict | None = None) -> dict[str, torch.Tensor]:
    folder.mkdir()
    torch.manual_seed(0)
    tensors = {"transformer.wte.weight": torch.randn(512, 128), "transformer.ln_f.weight": torch.randn(128)}
    for i in range(3):
        for name, _ in LAYER:
            tensors[f"transformer.h.{i}.{name}"] = torch.randn(4, 8)
    tensors.update(extra or {})
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(EXAONE35))
    (folder / "tokenizer.json").write_text("{}")
    return tensors


def test_a_folder_round_trips_byte_for_byte(tmp_path: Path) -> None:
    tensors = _exaone_folder(tmp_path / "exaone")
    (tmp_path / "llama").mkdir()
    (tmp_path / "back").mkdir()
    summary = exaone3.convert_folder(tmp_path / "exaone", tmp_path / "llama", to="llama")
    assert summary["tensors"] == len(tensors) and summary["dropped"] == []
    llama = load_file(str(tmp_path / "llama" / "model.safetensors"))
    assert torch.equal(
        llama["model.layers.1.self_attn.o_proj.weight"], tensors["transformer.h.1.attn.attention.out_proj.weight"]
    )
    assert (tmp_path / "llama" / "tokenizer.json").is_file()
    exaone3.convert_folder(tmp_path / "llama", tmp_path / "back", to="exaone3")
    back = load_file(str(tmp_path / "back" / "model.safetensors"))
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert json.loads((tmp_path / "back" / "config.json").read_text()) == EXAONE35


def test_unknown_tensors_are_refused_and_derived_buffers_dropped(tmp_path: Path) -> None:
    _exaone_folder(tmp_path / "a", {"transformer.rotary.inv_freq": torch.ones(32)})
    (tmp_path / "a-llama").mkdir()
    assert exaone3.convert_folder(tmp_path / "a", tmp_path / "a-llama", to="llama")["dropped"] == [
        "transformer.rotary.inv_freq"
    ]
    _exaone_folder(tmp_path / "b", {"transformer.h.0.attn.attention.rotary_bias": torch.ones(2)})
    (tmp_path / "b-llama").mkdir()
    with pytest.raises(CompressError, match=r"rotary_bias.*no place in the EXAONE 3 layout"):
        exaone3.convert_folder(tmp_path / "b", tmp_path / "b-llama", to="llama")


def test_transformers_reads_an_exaone_config_without_remote_code(tmp_path: Path) -> None:
    """auto_map names configuration_exaone.py, which the folder does not have: the registered class is used."""
    from transformers import AutoConfig

    (tmp_path / "config.json").write_text(json.dumps(EXAONE35))
    assert exaone3.register_config(tmp_path) is True
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config).__name__ == "ExaoneConfig"
    assert config.num_hidden_layers == config.num_layers == 3
    assert config.rope_parameters["rope_type"] == "llama3" and config.rope_parameters["rope_theta"] == 1000000.0
    assert (config.layer_norm_epsilon, config.activation_function, config.tie_word_embeddings) == (1e-5, "silu", True)


def test_a_model_saved_by_transformers_after_an_exaone_load_goes_back(tmp_path: Path) -> None:
    """transformers 5 saves a model loaded with key_mapping under the checkpoint's names, with a Llama config
    (or, through llm-compressor, the source's EXAONE config): both come out as a plain EXAONE 3 folder."""
    tensors = _exaone_folder(tmp_path / "saved")
    llama_config = {k: v for k, v in exaone3.to_llama_config(EXAONE35).items() if k != exaone3.STASH}
    quantized = {**EXAONE35, "quantization_config": {"quant_method": "compressed-tensors"}}
    for i, config in enumerate((llama_config, quantized)):
        (tmp_path / "saved" / "config.json").write_text(json.dumps(config))
        out = tmp_path / f"out-{i}"
        out.mkdir()
        exaone3.convert_folder(tmp_path / "saved", out, to="exaone3", like=EXAONE35)
        back = load_file(str(out / "model.safetensors"))
        assert back.keys() == tensors.keys()
        written = json.loads((out / "config.json").read_text())
        assert exaone3.STASH not in written and written["auto_map"] == EXAONE35["auto_map"]
        assert written["architectures"] == ["ExaoneForCausalLM"] and written["num_layers"] == 3
