"""EXAONE 3.x end to end without remote code: the tiny EXAONE-3.5-architecture fixture, its conversion to the
Llama layout and back, and its eight-variant matrix (Block Influence pruning, distillation, AWQ), every variant
written in the EXAONE 3 layout. The engines' side (vLLM's own ExaoneForCausalLM against the converted folder)
is tests/eval/test_exaone3_logits.py."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from compress.folders import exaone3

BUILT = ["base", "base-distilled", "compressed-l29", "compressed-l29-distilled", "compressed-l29-distilled-llmc-awq"]
"""What the tiny3_matrix fixture builds (CI's selection); the recipe's other three AWQ variants are built the
same way (python -m compress build tiny-exaone3 --profile quick)."""


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def _keys(folder: Path) -> list[str]:
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        return list(handle.keys())


def test_fixture_is_written_as_exaone_3_5(tiny_exaone3_dir: Path) -> None:
    config = _config(tiny_exaone3_dir)
    assert config["architectures"] == ["ExaoneForCausalLM"] and config["model_type"] == "exaone"
    assert config["num_layers"] == 30 and "num_hidden_layers" not in config
    assert config["rope_scaling"]["rope_type"] == "llama3" and config["tie_word_embeddings"] is True
    assert {"layer_norm_epsilon", "activation_function", "embed_dropout", "auto_map"} <= set(config)
    assert not list(tiny_exaone3_dir.glob("*.py")), "the fixture must need no remote code"
    keys = _keys(tiny_exaone3_dir)
    assert "transformer.wte.weight" in keys and "transformer.h.29.mlp.c_fc_0.weight" in keys
    assert not [k for k in keys if k.startswith("model.")] and "lm_head.weight" not in keys  # tied


def test_fixture_speaks_the_exaone_3_5_chat_format(tiny_exaone3_dir: Path) -> None:
    from compress.builders.common import load_tokenizer

    tokenizer = load_tokenizer(tiny_exaone3_dir)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered == "[|system|][|endofturn|]\n[|user|]hi\n[|assistant|]"
    assert (
        tokenizer.eos_token
        == "[|endofturn|]"
        == tokenizer.convert_ids_to_tokens(_config(tiny_exaone3_dir)["eos_token_id"])
    )


def test_conversion_round_trip_is_exact_and_hf_loads_both_forms_alike(tiny_exaone3_dir: Path, tmp_path: Path) -> None:
    """To Llama and back gives the same tensors and config.json; HF float32 logits of the converted folder
    (plain LlamaForCausalLM) and of the EXAONE folder (renamed on load) are identical."""
    from transformers import AutoModelForCausalLM

    from compress.builders.common import load_causal_lm

    llama, back = tmp_path / "llama", tmp_path / "back"
    llama.mkdir()
    back.mkdir()
    exaone3.convert_folder(tiny_exaone3_dir, llama, to="llama")
    exaone3.convert_folder(llama, back, to="exaone3")
    assert _config(back) == _config(tiny_exaone3_dir)
    with (
        safe_open(str(tiny_exaone3_dir / "model.safetensors"), framework="pt") as a,
        safe_open(str(back / "model.safetensors"), framework="pt") as b,
    ):
        assert sorted(a.keys()) == sorted(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    ids = torch.tensor([list(range(4, 60))])
    with torch.inference_mode():
        plain = AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32)(ids).logits
        renamed = load_causal_lm(tiny_exaone3_dir, dtype="float32", device="cpu")(ids).logits
    assert torch.equal(plain, renamed)


def test_matrix_keeps_the_exaone_3_layout(tiny3_matrix) -> None:
    assert [r.variant for r in tiny3_matrix.results] == BUILT
    assert len(tiny3_matrix.recipe.variants) == 8
    for variant in BUILT:
        config = _config(tiny3_matrix[variant])
        assert config["architectures"] == ["ExaoneForCausalLM"], variant
        assert config["num_layers"] == (29 if "l29" in variant else 30), variant
        assert "auto_map" in config and "embed_dropout" in config, variant  # EXAONE's own keys carried
        assert all(k.startswith(("transformer.", "lm_head")) for k in _keys(tiny3_matrix[variant])), variant
        assert (tiny3_matrix[variant] / "chat_template.jinja").is_file(), variant


def test_pruning_scored_transformer_h_by_block_influence(tiny3_matrix) -> None:
    result = tiny3_matrix.manifest("compressed-l29")["steps"][0]["result"]
    assert result["selection"] == "block_influence" and len(result["block_influence"]) == 30
    (dropped,) = result["dropped"]
    assert result["block_influence"][dropped] == min(result["block_influence"])
    assert (tiny3_matrix["compressed-l29"] / "block_influence.json").is_file()


def test_distillation_learns_and_writes_back_exaone_3(tiny3_matrix) -> None:
    result = tiny3_matrix.manifest("compressed-l29-distilled")["steps"][0]["result"]
    assert result["saved_layout"] == "exaone3" and result["kd_loss_measured_on"] == "held-out"
    assert result["kd_loss_after"] < result["kd_loss_before"]
    assert result["teacher"]["is_base"] and result["teacher"]["architecture"] == "ExaoneForCausalLM"


def test_base_distilled_from_itself_is_marked_same_as_base(tiny3_matrix) -> None:
    """The recipe keeps the default teacher: the variant is the base's weights, and the manifest says so."""
    manifest = tiny3_matrix.manifest("base-distilled")
    assert "nothing to learn" in manifest["steps"][0]["result"]["skipped"]
    assert manifest["same_as_base"] is True
    assert tiny3_matrix.manifest("compressed-l29-distilled")["same_as_base"] is False


def test_awq_used_the_llama_mapping_and_wrote_exaone_3(tiny3_matrix) -> None:
    variant = "compressed-l29-distilled-llmc-awq"
    result = tiny3_matrix.manifest(variant)["steps"][0]["result"]
    assert result["mappings"] == "llmcompressor AWQ_MAPPING_REGISTRY['LlamaForCausalLM']"
    assert result["mapped_as"] == "LlamaForCausalLM" and result["saved_layout"] == "exaone3"
    q = _config(tiny3_matrix[variant])["quantization_config"]
    assert q["quant_method"] == "compressed-tensors" and "lm_head" in q["ignore"]
    keys = _keys(tiny3_matrix[variant])
    assert "transformer.h.0.attn.attention.out_proj.weight_packed" in keys
    assert "transformer.h.0.mlp.c_fc_0.weight_scale" in keys
    # GQA (2 heads, 1 KV head): llm-awq's rule skips v_proj -> o_proj, and the manifest says so
    assert result["mappings_skipped"] == [
        "re:.*v_proj$ -> re:.*o_proj$ in 29 of 29 layers (grouped-query attention: shapes differ)"
    ]


def test_an_awq_folder_loads_in_hf_without_remote_code_and_answers(tiny3_matrix) -> None:
    from compress.core.prompts import load_prompts
    from compress.engines import SamplingConfig, open_engine

    prompts = [p.text for p in load_prompts()][:3]
    with open_engine(tiny3_matrix["compressed-l29-distilled-llmc-awq"], engine="hf", dtype="float32") as engine:
        texts = engine.chat(prompts, SamplingConfig(max_tokens=16)).texts
    assert all(t.strip() for t in texts), texts
