"""Degraded copies: each changes exactly what it says (decoder linear weights, or whole layers), by the amount
asked, reproducibly, without touching the source, and the result still loads and runs in HF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from compress.folders.atomic import folder_hashes
from compress.local_models.degrade import (
    RECORD,
    add_idle_layers,
    drop_layers,
    fake_quantize,
    is_decoder_linear,
    perturb_weights,
    round_to_nearest,
)

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 4-layer Llama in float32 (untied lm_head, so both embeddings are checked), with stub side
    files that drop_layers must carry along."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        head_dim=16,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # random norms, so "norms unchanged" is not trivially true of a tensor of ones
        for param in model.parameters():
            if param.ndim == 1:
                param.uniform_(0.5, 1.5)
    folder = tmp_path_factory.mktemp("tiny") / "llama"
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "stub"}}\n', encoding="utf-8")
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}", encoding="utf-8")
    return folder


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for shard in sorted(folder.glob("*.safetensors")) for k, v in load_file(shard).items()}


def logits(folder: Path) -> torch.Tensor:
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(folder).eval()
    with torch.inference_mode():
        return model(input_ids=torch.arange(12).unsqueeze(0)).logits


def test_the_selection_is_the_decoder_linear_weights(tiny_llama: Path) -> None:
    chosen = {k for k, v in weights(tiny_llama).items() if is_decoder_linear(k, v.ndim)}
    assert len(chosen) == 4 * len(LINEAR)
    assert all(any(f".{p}." in k for p in LINEAR) for k in chosen)
    assert is_decoder_linear("transformer.h.3.attn.attention.q_proj.weight", 2)
    assert not is_decoder_linear("model.embed_tokens.weight", 2)
    assert not is_decoder_linear("lm_head.weight", 2)
    assert not is_decoder_linear("model.layers.0.input_layernorm.weight", 1)


def test_perturbation_changes_only_decoder_linears_by_the_asked_amount(tiny_llama: Path, tmp_path: Path) -> None:
    before = folder_hashes(tiny_llama)
    dest = perturb_weights(tiny_llama, tmp_path / "noisy", relative_noise=0.3, seed=1)
    assert folder_hashes(tiny_llama) == before, "the source folder was modified"
    old, new = weights(tiny_llama), weights(dest)
    assert old.keys() == new.keys()
    for name, tensor in old.items():
        assert new[name].dtype == tensor.dtype and new[name].shape == tensor.shape
        if is_decoder_linear(name, tensor.ndim):
            measured = ((new[name] - tensor).std() / tensor.std()).item()
            assert measured == pytest.approx(0.3, rel=0.1), name
        else:
            assert torch.equal(new[name], tensor), f"{name} should be byte-identical"
    record = json.loads((dest / RECORD).read_text(encoding="utf-8"))
    assert record["kind"] == "perturb_weights"
    assert record["params"] == {"relative_noise": 0.3, "seed": 1, "include": "linear"}
    assert record["tensors_changed"] == 4 * len(LINEAR)
    assert (dest / "config.json").stat().st_ino == (tiny_llama / "config.json").stat().st_ino, "not hard-linked"
    assert torch.isfinite(logits(dest)).all()


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes(tiny_llama: Path, tmp_path: Path) -> None:
    first = perturb_weights(tiny_llama, tmp_path / "a", relative_noise=0.1, seed=7)
    again = perturb_weights(tiny_llama, tmp_path / "b", relative_noise=0.1, seed=7)
    other = perturb_weights(tiny_llama, tmp_path / "c", relative_noise=0.1, seed=8)
    shard = "model.safetensors"
    assert (first / shard).read_bytes() == (again / shard).read_bytes()
    assert (first / shard).read_bytes() != (other / shard).read_bytes()
    old, new = weights(tiny_llama), weights(first)
    noise = [
        new[f"model.layers.{i}.self_attn.k_proj.weight"] - old[f"model.layers.{i}.self_attn.k_proj.weight"]
        for i in range(2)
    ]
    assert not torch.allclose(noise[0], noise[1]), "two tensors of one shape got the same noise"


def test_round_to_nearest_puts_every_group_on_a_grid_of_2_to_the_bits(tiny_llama: Path, tmp_path: Path) -> None:
    bits, group = 3, 32
    before = folder_hashes(tiny_llama)
    dest = round_to_nearest(tiny_llama, tmp_path / "rtn", bits=bits, group_size=group)
    assert folder_hashes(tiny_llama) == before
    old, new = weights(tiny_llama), weights(dest)
    for name, tensor in old.items():
        if not is_decoder_linear(name, tensor.ndim):
            assert torch.equal(new[name], tensor), name
            continue
        w, q = tensor.reshape(-1, group), new[name].reshape(-1, group)
        assert not torch.equal(q, w), f"{name} was not quantized"
        scale = (w.amax(dim=1) - w.amin(dim=1)) / (2**bits - 1)
        for row in range(w.shape[0]):
            assert q[row].unique().numel() <= 2**bits, f"{name} group {row}"
        error = (q - w).abs().amax(dim=1)
        assert (error <= scale / 2 * (1 + 1e-5) + 1e-7).all(), name
    record = json.loads((dest / RECORD).read_text(encoding="utf-8"))
    assert record["params"] == {"bits": bits, "group_size": group, "symmetric": False}
    out = logits(dest)
    assert torch.isfinite(out).all()
    assert not torch.equal(out, logits(tiny_llama))


def test_symmetric_grid_and_constant_groups() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 64)
    w[0] = 0.25  # a constant group must stay exact, not blow up on a zero scale
    q = fake_quantize(w, bits=4, group_size=16, symmetric=True)
    scale = w.reshape(-1, 16).abs().amax(dim=1) / 7
    assert ((q - w).reshape(-1, 16).abs().amax(dim=1) <= scale / 2 * (1 + 1e-5)).all()
    assert all(g.unique().numel() <= 16 for g in q.reshape(-1, 16))
    assert torch.equal(fake_quantize(w, bits=4, group_size=16, symmetric=False)[0], w[0])


def test_a_group_size_that_does_not_divide_is_refused(tiny_llama: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not divisible by group_size=48"):
        round_to_nearest(tiny_llama, tmp_path / "bad", group_size=48)
    assert not any(tmp_path.iterdir()), "a failed copy left files behind"


def test_drop_layers_gives_a_loadable_three_layer_model(tiny_llama: Path, tmp_path: Path) -> None:
    before = folder_hashes(tiny_llama)
    dest = drop_layers(tiny_llama, tmp_path / "l3", drop=[1])
    assert folder_hashes(tiny_llama) == before
    config = json.loads((dest / "config.json").read_text(encoding="utf-8"))
    assert config["num_hidden_layers"] == 3
    assert (dest / "tokenizer.json").is_file() and (dest / "chat_template.jinja").is_file()
    old, new = weights(tiny_llama), weights(dest)
    assert torch.equal(new["model.layers.1.mlp.down_proj.weight"], old["model.layers.2.mlp.down_proj.weight"])
    assert not any(k.startswith("model.layers.3.") for k in new)
    record = json.loads((dest / RECORD).read_text(encoding="utf-8"))
    assert record["kind"] == "drop_layers" and record["params"] == {"drop": [1]} and record["layers_after"] == 3
    assert torch.isfinite(logits(dest)).all()


def test_idle_layers_make_a_deeper_model_with_exactly_the_same_logits(tiny_llama: Path, tmp_path: Path) -> None:
    """The speed gate's known-slow variant: 4 + 6 layers (copies of 0-3, then 0-1), outputs bit for bit."""
    before = folder_hashes(tiny_llama)
    dest = add_idle_layers(tiny_llama, tmp_path / "slow", extra=6)
    assert folder_hashes(tiny_llama) == before, "the source folder was modified"
    config = json.loads((dest / "config.json").read_text())
    assert config["num_hidden_layers"] == 10
    new, old = weights(dest), weights(tiny_llama)
    assert torch.equal(new["model.layers.9.self_attn.q_proj.weight"], old["model.layers.1.self_attn.q_proj.weight"])
    assert not new["model.layers.4.mlp.down_proj.weight"].any()
    assert not new["model.layers.8.self_attn.o_proj.weight"].any()
    assert torch.equal(new["model.layers.3.mlp.down_proj.weight"], old["model.layers.3.mlp.down_proj.weight"])
    assert torch.equal(logits(dest), logits(tiny_llama))  # x + 0 is x: the answers cannot move
    record = json.loads((dest / RECORD).read_text())
    assert (record["kind"], record["layers_before"], record["layers_after"]) == ("add_idle_layers", 4, 10)
    assert (dest / "tokenizer.json").is_file() and (dest / "chat_template.jinja").is_file()


def test_a_degraded_source_is_degraded_again_without_editing_its_record(tiny_llama: Path, tmp_path: Path) -> None:
    first = perturb_weights(tiny_llama, tmp_path / "a", relative_noise=0.05)
    record = (first / RECORD).read_text(encoding="utf-8")
    round_to_nearest(first, tmp_path / "b")
    drop_layers(first, tmp_path / "c", drop=[0])
    assert (first / RECORD).read_text(encoding="utf-8") == record
    assert json.loads((tmp_path / "c" / RECORD).read_text(encoding="utf-8"))["kind"] == "drop_layers"


@pytest.mark.parametrize("make", ["perturb", "rtn", "drop"])
def test_an_existing_dest_is_refused(tiny_llama: Path, tmp_path: Path, make: str) -> None:
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(FileExistsError):
        if make == "perturb":
            perturb_weights(tiny_llama, dest, relative_noise=0.1)
        elif make == "rtn":
            round_to_nearest(tiny_llama, dest)
        else:
            drop_layers(tiny_llama, dest, drop=[0])
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
