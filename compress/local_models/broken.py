"""Model folders made wrong on purpose, for tests that must see eval-compare, verify or the gate catch them.

Each maker takes a good folder and writes a variant beside nothing else: unchanged files are hard-linked
(no copy of the weights), changed ones are written fresh, so the source is never modified.

- :func:`link_copy`: the same model under another name (exact match 1.0 with its source).
- :func:`zero_final_norm`: the final norm's weight set to 0, so every logit is 0 and greedy decoding picks
  token id 0 at every step; for a tokenizer whose id 0 is a special token that decodes to ``""``, the answer
  is empty whatever the prompt (the silent failure the old scripts let through).
- :func:`corrupt_weights`: config and tokenizer intact, weights unreadable: passes the folder checks and
  fails inside the engine's load.

For the error paths that are decided before any model loads, :func:`checkpoint_folder` writes a folder from
nothing (a config, tiny safetensors weights in a family's layer layout, a stub tokenizer and chat template)
and :func:`broken_folder` removes or spoils one part of it: no torch import, milliseconds per folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from compress.folders.atomic import MANIFEST

FINAL_NORM = "model.norm.weight"


def link_copy(source: str | Path, dest: str | Path, *, skip: tuple[str, ...] = ()) -> Path:
    """Hard-link every file of ``source`` into ``dest`` (copy where links are impossible), minus ``skip``
    and the build manifest, which would describe the source."""
    source, dest = Path(source), Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_dir() or rel.as_posix() in skip or rel.name == MANIFEST:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    return dest


def _weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def zero_final_norm(source: str | Path, dest: str | Path) -> Path:
    """A copy of ``source`` whose final norm weight is zero: all logits 0, greedy picks token 0 forever."""
    from safetensors.torch import load_file, save_file

    source = Path(source)
    shard = next((f for f in _weight_files(source) if _has_tensor(f, FINAL_NORM)), None)
    if shard is None:
        raise ValueError(f"{source} has no {FINAL_NORM} tensor")
    dest = link_copy(source, dest, skip=(shard.name,))
    tensors = load_file(shard)
    tensors[FINAL_NORM] = tensors[FINAL_NORM].clone().zero_()
    save_file(tensors, dest / shard.name, metadata={"format": "pt"})
    return dest


def _has_tensor(file: Path, name: str) -> bool:
    from safetensors import safe_open

    with safe_open(file, framework="pt") as handle:
        return name in handle.keys()  # safe_open has keys(), not __contains__


def corrupt_weights(source: str | Path, dest: str | Path) -> Path:
    """A copy of ``source`` whose safetensors files hold garbage: the folder checks pass, the load fails."""
    source = Path(source)
    shards = _weight_files(source)
    dest = link_copy(source, dest, skip=tuple(s.name for s in shards))
    for shard in shards:
        (dest / shard.name).write_bytes(b"\x00" * 64 + b"not a safetensors file")
    return dest


# --- folders that only need to pass (or fail) the checks made before a load ----------------------------

# Each family's layer-count key, a decoder layer's tensor and the embedding (see compress/builders/prune.py).
FAMILIES = {
    "Exaone4ForCausalLM": ("num_hidden_layers", "model.layers.{}.mlp.down_proj.weight", "model.embed_tokens.weight"),
    "LlamaForCausalLM": ("num_hidden_layers", "model.layers.{}.mlp.down_proj.weight", "model.embed_tokens.weight"),
    "Qwen2ForCausalLM": ("num_hidden_layers", "model.layers.{}.mlp.down_proj.weight", "model.embed_tokens.weight"),
    "MistralForCausalLM": ("num_hidden_layers", "model.layers.{}.mlp.down_proj.weight", "model.embed_tokens.weight"),
    "ExaoneForCausalLM": ("num_layers", "transformer.h.{}.mlp.c_proj.weight", "transformer.wte.weight"),
}
BROKEN = (
    "no-config",
    "config-not-json",
    "config-a-list",
    "unsupported-architecture",
    "no-architectures",
    "no-weights",
    "only-pickled-weights",
    "missing-shard",
    "no-tokenizer",
    "no-chat-template",
)
"""What :func:`broken_folder` can spoil, one defect each."""


def checkpoint_folder(
    dest: str | Path,
    *,
    architecture: str = "Exaone4ForCausalLM",
    layers: int = 4,
    layer_types: list[str] | None = None,
    shards: int = 1,
) -> Path:
    """A model folder that passes :func:`compress.folders.checks.check_model_folder` (with
    ``trust_remote_code`` for EXAONE 3.x) but holds no real model: one 2x2 tensor per decoder layer (its value
    is the layer's index, so a renumbering is visible) plus an embedding, in ``shards`` safetensors files
    (with an index when more than one). The tokenizer and chat template are stubs that no engine can use."""
    import numpy as np
    from safetensors.numpy import save_file

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    count_key, layer_key, embed_key = FAMILIES[architecture]
    config: dict = {"architectures": [architecture], count_key: layers, "hidden_size": 2, "vocab_size": 4}
    if layer_types is not None:
        config["layer_types"] = list(layer_types)
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tensors = {layer_key.format(i): np.full((2, 2), i, dtype=np.float32) for i in range(layers)}
    tensors[embed_key] = np.zeros((4, 2), dtype=np.float32)
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for k in range(shards):
            shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[k::shards]}
            save_file(part, str(dest / shard), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, shard))
        index = {"metadata": {"total_size": 16 * len(names)}, "weight_map": weight_map}
        (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    (dest / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "stub"}}\n', encoding="utf-8")
    (dest / "chat_template.jinja").write_text("{{ messages[0]['content'] }}", encoding="utf-8")
    return dest


def broken_folder(dest: str | Path, defect: str) -> Path:
    """A :func:`checkpoint_folder` with one ``defect`` from :data:`BROKEN`."""
    if defect not in BROKEN:
        raise ValueError(f"unknown defect {defect!r}; one of {BROKEN}")
    dest = checkpoint_folder(dest, shards=2 if defect == "missing-shard" else 1)
    config = dest / "config.json"
    weights = sorted(dest.glob("*.safetensors"))
    if defect == "no-config":
        config.unlink()
    elif defect == "config-not-json":
        config.write_text('{"architectures": ["Exaone4ForCausalLM"],', encoding="utf-8")
    elif defect == "config-a-list":
        config.write_text("[]\n", encoding="utf-8")
    elif defect in ("unsupported-architecture", "no-architectures"):
        data = json.loads(config.read_text(encoding="utf-8"))
        if defect == "no-architectures":
            del data["architectures"]
        else:
            data["architectures"] = ["GPT2LMHeadModel"]
        config.write_text(json.dumps(data), encoding="utf-8")
    elif defect == "no-weights":
        for w in weights:
            w.unlink()
    elif defect == "only-pickled-weights":
        for w in weights:
            w.rename(w.with_name("pytorch_model.bin"))
    elif defect == "missing-shard":
        weights[-1].unlink()
    elif defect == "no-tokenizer":
        (dest / "tokenizer.json").unlink()
    elif defect == "no-chat-template":
        (dest / "chat_template.jinja").unlink()
    return dest
