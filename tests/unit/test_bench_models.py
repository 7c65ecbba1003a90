"""Config-only benchmark folders (compress/bench/dummy_models.py): configs, the bytes formula, tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.bench import dummy_models as dm
from compress.core.errors import CompressError


def test_exaone4_configs_drop_one_layer_and_rewrite_layer_types() -> None:
    base = dm.model_config("exaone4-1.2b", "base")
    l29 = dm.model_config("exaone4-1.2b", "l29")
    assert base["architectures"] == ["Exaone4ForCausalLM"]
    assert (base["num_hidden_layers"], l29["num_hidden_layers"]) == (30, 29)
    assert len(l29["layer_types"]) == 29 and set(l29["layer_types"]) == {"full_attention"}
    assert (base["vocab_size"], base["hidden_size"], base["intermediate_size"]) == (102400, 2048, 4096)
    assert base["tie_word_embeddings"] is True and "quantization_config" not in base


def test_w4a16_variants_carry_the_llmcompressor_block() -> None:
    cfg = dm.model_config("exaone4-1.2b", "l29-w4a16")
    q = cfg["quantization_config"]
    weights = q["config_groups"]["group_0"]["weights"]
    assert (q["quant_method"], q["format"], q["ignore"]) == ("compressed-tensors", "pack-quantized", ["lm_head"])
    assert (weights["num_bits"], weights["group_size"], weights["symmetric"]) == (4, 128, False)
    assert cfg["num_hidden_layers"] == 29
    cfg["quantization_config"]["ignore"].append("x")  # a deep copy: the module constant stays intact
    assert dm.W4A16["ignore"] == ["lm_head"]


def test_exaone35_uses_its_own_config_keys() -> None:
    cfg = dm.model_config("exaone3.5-2.4b", "l29")
    assert cfg["model_type"] == "exaone" and cfg["architectures"] == ["ExaoneForCausalLM"]
    assert cfg["num_layers"] == 29 and cfg["activation_function"] == "silu" and cfg["head_dim"] == 80


@pytest.mark.parametrize("what, kwargs", [("model", {"model": "gpt2"}), ("variant", {"variant": "l28"})])
def test_unknown_names_fail_with_the_choices(what: str, kwargs: dict) -> None:
    args = {"model": "exaone4-1.2b", "variant": "base", **kwargs}
    with pytest.raises(CompressError, match=f"unknown {what}"):
        dm.model_config(args["model"], args["variant"])


def test_weight_bytes_of_exaone4_by_hand() -> None:
    h, f, v, layers, d = 2048, 4096, 102400, 30, 64
    linear = layers * (h * 32 * d + 2 * h * 8 * d + 32 * d * h + 3 * h * f)
    norms = (2 * layers + 1) * h + 2 * layers * d
    bf16 = dm.weight_bytes_per_step(dm.model_config("exaone4-1.2b", "base"))
    assert bf16["total"] == 2 * (linear + v * h + norms)
    assert 2.55e9 < bf16["total"] < 2.57e9  # ~1.28 B params in bf16
    w4 = dm.weight_bytes_per_step(dm.model_config("exaone4-1.2b", "w4a16"))
    assert w4["linear_bytes"] == pytest.approx(linear * 0.5 + linear / 128 * 2.5)
    assert w4["head_bytes"] == bf16["head_bytes"]  # lm_head stays 16-bit
    l29 = dm.weight_bytes_per_step(dm.model_config("exaone4-1.2b", "l29"))
    assert bf16["total"] - l29["total"] == 2 * (linear // layers + 2 * h + 2 * d)


def test_stand_in_tokenizer_and_folder(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("def hello(world):\n    return world * 2\n" * 200, encoding="utf-8")
    tok_dir = dm.build_tokenizer(tmp_path / "tok", 600, [corpus])
    folder = dm.write_variant(tmp_path / "m" / "base", dm.model_config("exaone4-1.2b", "base", "tiny"), tok_dir)
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 4
    tok = AutoTokenizer.from_pretrained(folder)
    assert len(tok) == 600
    assert tok.convert_tokens_to_ids(["[PAD]", "[BOS]", "[|endofturn|]"]) == [0, 1, 7]
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "[|user|]hi\n[|assistant|]"
    assert tok.decode([599]) == "<f599>"  # padded ids decode
    with pytest.raises(CompressError, match="has 600 ids but the model has 4096"):
        dm.ensure_tokenizer(4096, tok_dir)
