"""Depth pruning: the config rewrite (properties), the checkpoint rewrite (llama, EXAONE 4, EXAONE 3.x),
and pruned folders that load in HF, generate, and compute what the original minus those layers computes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from compress.builders import importance
from compress.builders.common import BuildContext
from compress.builders.prune import (
    COUNT_KEYS,
    PruneParams,
    check_drop,
    prune_checkpoint,
    prune_config,
    run,
)
from compress.core.errors import CompressError
from compress.folders.checks import check_model_folder

LAYER_TYPES = ["sliding_attention", "full_attention"]


# --- the config rewrite: a pure function -------------------------------------------------------------


@st.composite
def config_and_drop(draw: st.DrawFn) -> tuple[dict, list[int]]:
    n = draw(st.integers(1, 64))
    config: dict = {
        "architectures": ["Exaone4ForCausalLM"],
        draw(st.sampled_from(COUNT_KEYS)): n,
        "hidden_size": 8,
    }
    if draw(st.booleans()):
        config["layer_types"] = draw(st.lists(st.sampled_from(LAYER_TYPES), min_size=n, max_size=n))
    drop = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n - 1))
    return config, drop


@settings(max_examples=200, deadline=None)
@given(case=config_and_drop())
def test_any_valid_drop_gives_a_consistent_config(case: tuple[dict, list[int]]) -> None:
    config, drop = case
    before = json.dumps(config, sort_keys=True)
    new, mapping = prune_config(config, drop)
    assert json.dumps(config, sort_keys=True) == before, "prune_config must not modify its input"
    n = next(config[k] for k in COUNT_KEYS if k in config)
    kept = [i for i in range(n) if i not in drop]
    count_key = next(k for k in COUNT_KEYS if k in config)
    assert new[count_key] == len(kept) == n - len(drop)
    # Kept layers are renumbered 0..len-1 in their original order.
    assert sorted(mapping) == kept
    assert [mapping[i] for i in kept] == list(range(len(kept)))
    if "layer_types" in config:
        assert new["layer_types"] == [config["layer_types"][i] for i in kept]
        assert len(new["layer_types"]) == new[count_key]
    assert {k: v for k, v in new.items() if k not in (count_key, "layer_types")} == {
        k: v for k, v in config.items() if k not in (count_key, "layer_types")
    }


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 40), drop=st.lists(st.integers(-5, 45), max_size=45))
def test_any_invalid_drop_is_refused(n: int, drop: list[int]) -> None:
    valid = all(0 <= i < n for i in drop) and len(set(drop)) == len(drop) and len(drop) < n
    if valid:
        assert check_drop(n, drop) == tuple(sorted(drop))
    else:
        with pytest.raises(CompressError, match="Fix:"):
            check_drop(n, drop)


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ([30], r"indices \[30\] are out of range for a model with 30 layers.*use indices 0..29"),
        ([-1], "out of range"),
        ([3, 3], r"\[3\] are listed more than once"),
        (list(range(30)), "would remove every layer"),
    ],
)
def test_drop_errors_say_what_and_how_to_fix(drop: list[int], message: str) -> None:
    with pytest.raises(CompressError, match=message) as err:
        prune_config({"num_hidden_layers": 30, "layer_types": ["full_attention"] * 30}, drop)
    assert "\n" not in str(err.value)


def test_config_errors() -> None:
    with pytest.raises(CompressError, match=r"already quantized.*prune before AWQ"):
        prune_config({"num_hidden_layers": 4, "quantization_config": {"quant_method": "x"}}, [1])
    with pytest.raises(CompressError, match="layer_types has 3 entries for 4 layers"):
        prune_config({"num_hidden_layers": 4, "layer_types": ["full_attention"] * 3}, [1])


def test_least_important_picks_the_lowest_scores() -> None:
    assert importance.least_important([0.5, 0.1, 0.3, 0.05], 2) == [1, 3]
    assert importance.least_important([0.2, 0.2, 0.2], 1) == [2]  # ties: the later layer goes first


# --- llama layout, sharded, at checkpoint level ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tiny_exaone4_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 6-layer LlamaForCausalLM (tied embeddings) in safetensors shards, with a real tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    vocab = json.loads((tiny_exaone4_dir / "config.json").read_text())["vocab_size"]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, max_shard_size="300KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (tiny_exaone4_dir / name).is_file():
            shutil.copy(tiny_exaone4_dir / name, folder / name)
    assert (folder / "model.safetensors.index.json").is_file(), "the fixture must be sharded"
    return folder


def _load(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def _without_layers(folder: Path, drop: list[int]):
    """The original model with layers removed in memory: what a pruned checkpoint must compute."""
    model = _load(folder)
    layers = model.model.layers
    kept = [layer for i, layer in enumerate(layers) if i not in drop]
    for new_index, layer in enumerate(kept):
        layer.self_attn.layer_idx = new_index
    model.model.layers = torch.nn.ModuleList(kept)
    model.config.num_hidden_layers = len(kept)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [t for i, t in enumerate(model.config.layer_types) if i not in drop]
    return model


def _same_logits(a, b, vocab: int) -> None:
    ids = torch.arange(3, 40).unsqueeze(0) % vocab
    with torch.inference_mode():
        torch.testing.assert_close(a(input_ids=ids).logits, b(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_llama_sharded_prune_renumbers_and_matches_the_original(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    out.mkdir()
    summary = prune_checkpoint(tiny_llama, out, [1, 4])
    assert summary["kept"] == [0, 2, 3, 5] and summary["layers_after"] == 4

    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 4 and config["tie_word_embeddings"] is True
    index = json.loads((out / "model.safetensors.index.json").read_text())
    layer_ids = {int(k.split(".")[2]) for k in index["weight_map"] if k.startswith("model.layers.")}
    assert layer_ids == {0, 1, 2, 3}
    assert "lm_head.weight" not in index["weight_map"], "tied embeddings must stay tied (no lm_head copy)"
    for key, shard in index["weight_map"].items():
        with safe_open(out / shard, framework="pt") as f:
            assert key in f.keys()
    # Old layer 2 is new layer 1, byte for byte.
    old_index = json.loads((tiny_llama / "model.safetensors.index.json").read_text())["weight_map"]
    key = "model.layers.{}.mlp.down_proj.weight"
    with (
        safe_open(tiny_llama / old_index[key.format(2)], framework="pt") as old,
        safe_open(out / index["weight_map"][key.format(1)], framework="pt") as new,
    ):
        assert torch.equal(old.get_tensor(key.format(2)), new.get_tensor(key.format(1)))
    for name in ("tokenizer.json", "chat_template.jinja", "generation_config.json"):
        assert (out / name).read_bytes() == (tiny_llama / name).read_bytes()

    check_model_folder(out)
    pruned = _load(out)
    assert pruned.lm_head.weight.data_ptr() == pruned.model.embed_tokens.weight.data_ptr()
    _same_logits(pruned, _without_layers(tiny_llama, [1, 4]), config["vocab_size"])


def test_exaone3_layout_is_pruned_at_checkpoint_level(tmp_path: Path) -> None:
    """EXAONE 3.x (remote code, layers under transformer.h, count in num_layers): no model is loaded."""
    src, out = tmp_path / "exaone3", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    n = 4
    config = {
        "architectures": ["ExaoneForCausalLM"],
        "model_type": "exaone",
        "num_layers": n,
        "hidden_size": 4,
    }
    (src / "config.json").write_text(json.dumps(config))
    (src / "modeling_exaone.py").write_text("# remote code is carried over, never run here\n")
    tensors = {"transformer.wte.weight": torch.zeros(8, 4), "transformer.ln_f.weight": torch.ones(4)}
    for i in range(n):
        tensors[f"transformer.h.{i}.ln_1.weight"] = torch.full((4,), float(i))
        tensors[f"transformer.h.{i}.attn.attention.q_proj.weight"] = torch.full((4, 4), float(i))
        tensors[f"transformer.h.{i}.mlp.c_fc_0.weight"] = torch.full((4, 4), float(i))
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})

    prune_checkpoint(src, out, [0, 2])
    new_config = json.loads((out / "config.json").read_text())
    assert new_config["num_layers"] == 2
    with safe_open(out / "model.safetensors", framework="pt") as f:
        keys = set(f.keys())
        assert f.metadata() == {"format": "pt"}
        # new layer 0 is old layer 1, new layer 1 is old layer 3
        assert float(f.get_tensor("transformer.h.0.ln_1.weight")[0]) == 1.0
        assert float(f.get_tensor("transformer.h.1.mlp.c_fc_0.weight")[0, 0]) == 3.0
    assert {k for k in keys if k.startswith("transformer.h.")} == {
        f"transformer.h.{i}.{p}"
        for i in (0, 1)
        for p in ("ln_1.weight", "attn.attention.q_proj.weight", "mlp.c_fc_0.weight")
    }
    assert {"transformer.wte.weight", "transformer.ln_f.weight"} <= keys
    assert (out / "modeling_exaone.py").is_file()


def test_config_that_disagrees_with_the_weights_is_refused(tiny_llama: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(tiny_llama, src)
    config = json.loads((src / "config.json").read_text())
    config["num_hidden_layers"] = 5
    (src / "config.json").write_text(json.dumps(config))
    (tmp_path / "out").mkdir()
    with pytest.raises(CompressError, match=r"config\.json says 5"):
        prune_checkpoint(src, tmp_path / "out", [0])


def test_prune_step_parameter_errors(tiny_llama: Path, tmp_path: Path) -> None:
    ctx = BuildContext(base_dir=tiny_llama)
    with pytest.raises(CompressError, match=r"does not remove anything.*at most 5"):
        run(tiny_llama, tmp_path, PruneParams(keep=6), ctx)
    with pytest.raises(CompressError, match="drop lists 2 layers, but keep=5 of 6 means dropping 1"):
        run(tiny_llama, tmp_path, PruneParams(keep=5, drop=(0, 1)), ctx)
    with pytest.raises(CompressError, match="out of range"):
        run(tiny_llama, tmp_path, PruneParams(keep=5, drop=(6,)), ctx)


# --- EXAONE 4 on the tiny model, through the build ---------------------------------------------------


def test_exaone4_pruned_by_block_influence(tiny_matrix, tiny_exaone4_dir: Path) -> None:
    folder = tiny_matrix["compressed-l29"]
    base_config = json.loads((tiny_exaone4_dir / "config.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    scores = json.loads((folder / importance.SCORES_FILE).read_text())
    dropped = scores["dropped"]
    print("\ntiny-exaone4 Block Influence:", scores["scores"], "dropped", dropped)

    assert config["architectures"] == ["Exaone4ForCausalLM"]
    assert len(scores["scores"]) == base_config["num_hidden_layers"] == 30
    assert len(dropped) == 1
    assert min(scores["scores"].values()) == scores["scores"][str(dropped[0])]
    assert config["num_hidden_layers"] == 29
    assert config["layer_types"] == [t for i, t in enumerate(base_config["layer_types"]) if i not in dropped]
    manifest = tiny_matrix.manifest("compressed-l29")
    assert manifest["steps"][0]["result"]["dropped"] == dropped

    check_model_folder(folder)
    _same_logits(_load(folder), _without_layers(tiny_exaone4_dir, dropped), config["vocab_size"])


def test_pruned_folders_generate_through_the_chat_template(tiny_matrix, tiny_exaone4_dir: Path) -> None:
    from compress.core.prompts import load_prompts
    from compress.engines import SamplingConfig, open_engine

    prompts = [p.text for p in load_prompts()][:3]
    with open_engine(tiny_matrix["compressed-l29"], engine="hf", dtype="float32") as engine:
        texts = engine.chat(prompts, SamplingConfig(max_tokens=16)).texts
    assert all(t.strip() for t in texts), texts
