"""`python -m compress init`: the recipe's parameters come from the checkpoint's config.json, what cannot be
built is refused with the fix, and what init writes is what build reads. Fake folders (config.json plus stub
weights, tokenizer and chat template from compress.local_models.broken): no model loads, milliseconds each."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from compress.build.init_recipe import awq_group_size, init_recipe, inspect_checkpoint
from compress.build.recipe import load_recipe
from compress.cli import main
from compress.core.errors import CompressError
from compress.local_models.broken import FAMILIES, checkpoint_folder

# The shapes of the real checkpoints (their config.json values; weights are stubs).
EXAONE4_1_2B = {
    "architectures": ["Exaone4ForCausalLM"],
    "model_type": "exaone4",
    "num_hidden_layers": 30,
    "hidden_size": 2048,
    "intermediate_size": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 102400,
    "tie_word_embeddings": True,
    "dtype": "bfloat16",
    "layer_types": ["full_attention"] * 30,
}
EXAONE3_5_2_4B = {
    "architectures": ["ExaoneForCausalLM"],
    "model_type": "exaone",
    "auto_map": {
        "AutoConfig": "configuration_exaone.ExaoneConfig",
        "AutoModelForCausalLM": "modeling_exaone.ExaoneForCausalLM",
    },
    "num_layers": 30,
    "hidden_size": 2560,
    "intermediate_size": 7168,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 80,
    "vocab_size": 102400,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
SMOLLM2 = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "num_hidden_layers": 30,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "dtype": "bfloat16",
}


def fake_checkpoint(tmp_path: Path, config: dict, name: str = "ckpt") -> Path:
    arch = config["architectures"][0] if config.get("architectures") else "Exaone4ForCausalLM"
    folder = checkpoint_folder(tmp_path / name, architecture=arch if arch in FAMILIES else "LlamaForCausalLM")
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if arch == "ExaoneForCausalLM":
        for module in ("configuration_exaone.py", "modeling_exaone.py"):
            (folder / module).write_text("# remote code stub\n", encoding="utf-8")
    return folder


def written(tmp_path: Path, config: dict, name: str = "m", **options: bool) -> tuple[dict, str, Path]:
    out = tmp_path / f"{name}.toml"
    init_recipe(fake_checkpoint(tmp_path, config), name, out, **options)
    text = out.read_text(encoding="utf-8")
    return tomllib.loads(text), text, out


def test_exaone4_recipe_from_its_config(tmp_path: Path) -> None:
    data, text, out = written(tmp_path, EXAONE4_1_2B, "exaone4-1.2b")
    assert data["matrix"] == "exaone4-1.2b" and Path(data["base"]) == (tmp_path / "ckpt").resolve()
    assert data["step"]["prune"]["keep"] == 29 and data["step"]["awq"]["group_size"] == 128
    assert "trust_remote_code" not in data
    assert "layer_types" in text and "EXAONE-4 mapping" in text  # the family's own notes
    recipe = load_recipe(out, profile="quick")
    assert "compressed-l29-distilled-llmc-awq" in recipe.variants and len(recipe.variants) == 8
    # About 1.28B parameters, 1.07B without embeddings (the model card's figures).
    assert inspect_checkpoint(tmp_path / "ckpt").parameters == pytest.approx(1.279e9, rel=0.01)


def test_exaone3_recipe_trusts_remote_code_when_asked_and_says_awq_waits(tmp_path: Path) -> None:
    with pytest.raises(CompressError, match=r"EXAONE 3.x, whose modeling code is Python in the folder.*--trust-remote"):
        init_recipe(fake_checkpoint(tmp_path / "x", EXAONE3_5_2_4B), "m", tmp_path / "x.toml")
    assert not (tmp_path / "x.toml").exists()
    data, text, out = written(tmp_path, EXAONE3_5_2_4B, trust_remote_code=True)
    assert data["trust_remote_code"] is True and "--gate-trust-remote-code" in text
    assert data["step"]["prune"]["keep"] == 29  # from num_layers, EXAONE 3.x's layer count key
    assert data["step"]["awq"]["group_size"] == 128  # 2560, 7168 and 32 heads x 80 all divide by 128
    assert "AWQ on EXAONE 3.x needs the EXAONE-3 builder support" in text
    assert load_recipe(out).trust_remote_code


def test_llama_recipe_group_size_follows_the_widths(tmp_path: Path) -> None:
    data, _, _ = written(tmp_path, SMOLLM2)
    assert data["step"]["awq"]["group_size"] == 64  # 576 = 4.5 x 128
    assert data["step"]["prune"]["keep"] == 29
    assert awq_group_size((160, 480, 160)) == 32
    with pytest.raises(CompressError, match="no AWQ group size of 128, 64, 32 divides"):
        awq_group_size((100, 256))


@pytest.mark.parametrize("arch", ["Qwen2ForCausalLM", "MistralForCausalLM"])
def test_llama_layout_families(tmp_path: Path, arch: str) -> None:
    # Qwen2.5-0.5B's widths: hidden 896 (7 x 128), FFN 4864 (38 x 128), 14 heads x 64 = 896: group 128.
    config = {**SMOLLM2, "architectures": [arch], "num_hidden_layers": 24, "hidden_size": 896,
              "intermediate_size": 4864, "num_attention_heads": 14, "num_key_value_heads": 2}  # fmt: skip
    data, text, _ = written(tmp_path, config)
    assert data["step"]["prune"]["keep"] == 23 and data["step"]["awq"]["group_size"] == 128
    assert "Llama layout" in text


def test_layer_count_names_the_pruned_variants(tmp_path: Path) -> None:
    _, _, out = written(tmp_path, {**EXAONE4_1_2B, "num_hidden_layers": 64, "layer_types": ["full_attention"] * 64})
    names = list(load_recipe(out).variants)
    assert "compressed-l63" in names and "compressed-l63-distilled-llmc-awq" in names


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        pytest.param(
            {**EXAONE4_1_2B, "architectures": ["GPT2LMHeadModel"]}, "architecture 'GPT2LMHeadModel'", id="unknown-arch"
        ),
        pytest.param({**EXAONE4_1_2B, "architectures": []}, "no architectures list", id="no-arch"),
        pytest.param(
            {**EXAONE4_1_2B, "quantization_config": {"quant_method": "compressed-tensors"}},
            "is a quantized checkpoint (compressed-tensors)",
            id="quantized",
        ),
        pytest.param(
            {**SMOLLM2, "architectures": ["MixtralForCausalLM"], "num_local_experts": 8},
            "is a mixture-of-experts model",
            id="moe",
        ),
        pytest.param({**EXAONE4_1_2B, "num_hidden_layers": 1}, "gives 1 decoder layers", id="one-layer"),
        pytest.param({**SMOLLM2, "hidden_size": 100}, "no AWQ group size", id="no-group-size"),
        pytest.param(
            {k: v for k, v in SMOLLM2.items() if k != "intermediate_size"}, "has no intermediate_size", id="no-ffn"
        ),
    ],
)
def test_refusals_from_the_config(tmp_path: Path, config: dict, reason: str) -> None:
    out = tmp_path / "r.toml"
    with pytest.raises(CompressError, match=r"Fix: ") as err:
        init_recipe(fake_checkpoint(tmp_path, config), "m", out)
    assert reason in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        pytest.param("config.json", "has no config.json", id="no-config"),
        pytest.param("tokenizer.json", "has no tokenizer", id="no-tokenizer"),
        pytest.param("chat_template.jinja", "has no chat template", id="no-chat-template"),
        pytest.param("modeling_exaone.py", "lacks its remote code (modeling_exaone.py)", id="exaone3-no-remote-code"),
    ],
)
def test_refusals_from_the_folder(tmp_path: Path, spoil: str, reason: str) -> None:
    folder = fake_checkpoint(tmp_path, EXAONE3_5_2_4B)
    (folder / spoil).unlink()
    with pytest.raises(CompressError, match="Fix: ") as err:
        init_recipe(folder, "m", tmp_path / "r.toml", trust_remote_code=True)
    assert reason in str(err.value)


def test_cli_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = fake_checkpoint(tmp_path, EXAONE4_1_2B)
    out = tmp_path / "recipes" / "mine.toml"  # its folder is made
    args = ["init", "--base", str(folder), "--name", "mine", "--out", str(out)]
    assert main(args) == 0
    assert "keep 29" in capsys.readouterr().out
    out.write_text("# edited by hand\n", encoding="utf-8")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: recipe") and "exists" in err and "--force" in err and "\n" not in err
    assert out.read_text(encoding="utf-8") == "# edited by hand\n"
    assert main([*args, "--force"]) == 0 and "keep = 29" in out.read_text(encoding="utf-8")
    assert main(["init", "--base", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.toml")]) == 2
    assert "is not a folder" in capsys.readouterr().err and not (tmp_path / "x.toml").exists()
    assert main(["init", "--base", str(folder), "--name", "bad/name", "--out", str(tmp_path / "y.toml")]) == 2


def test_relative_base_is_taken_from_the_recipe_folder(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path / "models", EXAONE4_1_2B, "exaone")
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "r.toml").write_text('base = "../models/exaone"\n[[variant]]\nsteps = []\n', encoding="utf-8")
    assert Path(load_recipe(recipes / "r.toml").base) == (tmp_path / "models" / "exaone").resolve()
    (recipes / "local.toml").write_text('base = "smollm2"\n[[variant]]\nsteps = []\n', encoding="utf-8")
    assert load_recipe(recipes / "local.toml").base == "smollm2"  # a local model's name stays a name
