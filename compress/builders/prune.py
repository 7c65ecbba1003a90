"""Depth pruning: drop whole decoder layers, chosen by index or by measured Block Influence.

It works on the checkpoint, not on a loaded model: each safetensors shard is read tensor by tensor
(``safe_open``), the kept layers are renumbered (``model.layers.{i}.*`` for llama and EXAONE 4,
``transformer.h.{i}.*`` for EXAONE 3.x), and the config's layer count and per-layer lists
(``layer_types``) are rewritten to match. Nothing else changes: embeddings (tied or not), norms, the
tokenizer, chat template and generation config are carried over as they are. Only importance scoring
loads the model.

Recipe::

    [step.prune]
    keep = 29            # decoder layers kept; the variant is named compressed-l29
    # drop = [14]        # drop these indices instead of the least important ones
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from compress.builders.common import BuildContext, StepParams, base_answers, carry_side_files, load_tokenizer
from compress.core.errors import CompressError
from compress.folders.checks import read_config
from compress.folders.matrix import BASELINE

INDEX_FILE = "model.safetensors.index.json"
# Config keys that count decoder layers, by family: llama/EXAONE 4, EXAONE 3.x, GPT-2 style.
COUNT_KEYS = ("num_hidden_layers", "num_layers", "n_layer")
# Config lists with one entry per layer, kept in step with the layers.
PER_LAYER_KEYS = ("layer_types", "no_rope_layers")


class PruneParams(StepParams):
    keep: int = Field(ge=1, description="decoder layers kept")
    drop: tuple[int, ...] | None = Field(
        default=None, description="layer indices to drop; unset: the least important by Block Influence"
    )
    calibration_samples: int = Field(default=42, ge=1, description="training prompts used to score layers")
    max_answer_tokens: int = Field(
        default=64, ge=1, description="length of the base's answers scored with them"
    )
    device: str = "auto"


def name_for(parent: str, params: PruneParams) -> str:
    """``base`` -> ``compressed-l29``; a pruned variant of another variant appends ``-l29``."""
    return f"compressed-l{params.keep}" if parent == BASELINE else f"{parent}-l{params.keep}"


@dataclass(frozen=True)
class Layout:
    """Where a family keeps its decoder layers in the checkpoint."""

    prefix: str

    def pattern(self) -> re.Pattern[str]:
        return _pattern(self.prefix)


@functools.cache
def _pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}(\d+)\.(.+)$")


LAYOUTS = {
    "Exaone4ForCausalLM": Layout("model.layers."),
    "LlamaForCausalLM": Layout("model.layers."),
    "Qwen2ForCausalLM": Layout("model.layers."),
    "MistralForCausalLM": Layout("model.layers."),
    "ExaoneForCausalLM": Layout("transformer.h."),
}


def layout_for(config: dict) -> Layout:
    arch = (config.get("architectures") or ["?"])[0]
    if arch in LAYOUTS:
        return LAYOUTS[arch]
    raise CompressError(
        f"pruning does not know where {arch} keeps its decoder layers",
        f"use one of {', '.join(LAYOUTS)}, or add the architecture to LAYOUTS in compress/builders/prune.py",
    )


def num_layers(config: dict) -> int:
    for key in COUNT_KEYS:
        if isinstance(config.get(key), int):
            return int(config[key])
    raise CompressError("the model config has no layer count (num_hidden_layers)", "check config.json")


def check_drop(n_layers: int, drop: Iterable[int]) -> tuple[int, ...]:
    """Validate layer indices to drop; returns them sorted. One-line errors for every user mistake."""
    drop = list(drop)
    bad = [i for i in drop if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n_layers]
    if bad:
        raise CompressError(
            f"layer indices {bad} are out of range for a model with {n_layers} layers",
            f"use indices 0..{n_layers - 1}",
        )
    repeated = sorted({i for i in drop if drop.count(i) > 1})
    if repeated:
        raise CompressError(f"layer indices {repeated} are listed more than once", "list each layer once")
    if len(drop) >= n_layers:
        raise CompressError(
            f"dropping {len(drop)} of {n_layers} layers would remove every layer",
            "keep at least one layer (drop fewer indices, or raise keep)",
        )
    return tuple(sorted(drop))


def check_params(n_layers: int, params: PruneParams) -> tuple[int, ...] | None:
    """Check ``keep`` and ``drop`` against a model of ``n_layers`` layers; returns the sorted indices to drop
    (None: chosen later by importance). Pure, so a build can check every prune step before writing anything."""
    if params.keep >= n_layers:
        raise CompressError(
            f"prune keep={params.keep} does not remove anything from a model with {n_layers} layers",
            f"set keep to at most {n_layers - 1}",
        )
    if params.drop is None:
        return None
    drop = check_drop(n_layers, params.drop)
    if len(drop) != n_layers - params.keep:
        raise CompressError(
            f"prune drop lists {len(drop)} layers, but keep={params.keep} of {n_layers} means "
            f"dropping {n_layers - params.keep}",
            f"list {n_layers - params.keep} indices, or set keep={n_layers - len(drop)}",
        )
    return drop


def prune_config(config: dict, drop: Iterable[int]) -> tuple[dict, dict[int, int]]:
    """The config after dropping ``drop``, and the map old layer index -> new index. Pure: no I/O.

    Rewrites every layer-count key present and every per-layer list (``layer_types``: EXAONE 4's hybrid
    sliding/global attention must follow its layers).
    """
    if config.get("quantization_config"):
        raise CompressError(
            "this model is already quantized; pruning rewrites unquantized checkpoints only",
            "prune before AWQ (put prune earlier in the variant's steps)",
        )
    n = num_layers(config)
    dropped = set(check_drop(n, drop))
    kept = [i for i in range(n) if i not in dropped]
    mapping = {old: new for new, old in enumerate(kept)}
    return config_with_layers(config, kept), mapping


def config_with_layers(config: dict, sources: list[int]) -> dict:
    """``config`` for a model whose layer ``i`` is the old layer ``sources[i]`` (kept, dropped or repeated):
    every layer-count key present follows, and every per-layer list. Pure: no I/O."""
    n = num_layers(config)
    new = copy.deepcopy(config)
    for key in COUNT_KEYS:
        if isinstance(new.get(key), int):
            new[key] = len(sources)
    for key in PER_LAYER_KEYS:
        values = new.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != n:
            raise CompressError(
                f"config {key} has {len(values) if isinstance(values, list) else 'no list of'} entries "
                f"for {n} layers",
                "fix the base model's config.json",
            )
        new[key] = [values[i] for i in sources]
    return new


def rename_key(key: str, layout: Layout, mapping: dict[int, int]) -> str | None:
    """The tensor's name after pruning, or None when it belongs to a dropped layer."""
    match = layout.pattern().match(key)
    if match is None:
        return key
    old = int(match.group(1))
    if old not in mapping:
        return None
    return f"{layout.prefix}{mapping[old]}.{match.group(2)}"


def prune_checkpoint(src: Path, out: Path, drop: Iterable[int]) -> dict[str, Any]:
    """Write ``src`` minus the ``drop`` layers into ``out``, shard by shard. Returns a summary."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tqdm import tqdm

    config = read_config(src)
    layout = layout_for(config)
    new_config, mapping = prune_config(config, drop)
    pattern = layout.pattern()
    index_path = src / INDEX_FILE
    if index_path.is_file():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        shards = sorted(set(index["weight_map"].values()))
    else:
        index = None
        shards = sorted(p.name for p in src.glob("*.safetensors"))
    if not shards:
        raise CompressError(
            f"model folder {src} has no safetensors weights", "point at a complete model folder"
        )

    weight_map: dict[str, str] = {}
    total_bytes = 0
    seen_layers: set[int] = set()
    for shard in tqdm(shards, desc="prune: rewrite shards", unit="shard"):
        tensors = {}
        with safe_open(str(src / shard), framework="pt") as handle:
            metadata = handle.metadata() or {"format": "pt"}
            for key in handle.keys():
                match = pattern.match(key)
                if match:
                    seen_layers.add(int(match.group(1)))
                new_key = rename_key(key, layout, mapping)
                if new_key is None:
                    continue
                tensor = handle.get_tensor(key)
                tensors[new_key] = tensor
                total_bytes += tensor.numel() * tensor.element_size()
        if tensors:
            save_file(tensors, str(out / shard), metadata=metadata)
            weight_map.update(dict.fromkeys(tensors, shard))
    n = num_layers(config)
    if seen_layers != set(range(n)):
        raise CompressError(
            f"the weights in {src} hold layers {sorted(seen_layers)[:3]}..{len(seen_layers)} in all under "
            f"{layout.prefix!r}, but config.json says {n}",
            "check that config.json belongs to these weights",
        )
    if index is not None:
        new_index = {
            "metadata": {**index.get("metadata", {}), "total_size": total_bytes},
            "weight_map": weight_map,
        }
        (out / INDEX_FILE).write_text(
            json.dumps(new_index, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    (out / "config.json").write_text(json.dumps(new_config, indent=2) + "\n", encoding="utf-8")
    carried = carry_side_files(src, out)
    kept = sorted(mapping)
    return {
        "layers_before": n,
        "layers_after": len(kept),
        "dropped": sorted(set(range(n)) - set(kept)),
        "kept": kept,
        "carried": carried,
    }


def run(src: Path, out: Path, params: PruneParams, ctx: BuildContext) -> dict[str, Any]:
    """The recipe step: choose the layers (given, or least important), then rewrite the checkpoint."""
    from compress.builders import importance

    config = read_config(src)
    n = num_layers(config)
    layout_for(config)
    given = check_params(n, params)
    result: dict[str, Any] = {}
    if given is not None:
        drop = given
        result["selection"] = "index"
    else:
        samples = base_answers(
            ctx, max_new_tokens=params.max_answer_tokens, device=params.device, limit=params.calibration_samples
        )
        tokenizer = load_tokenizer(src, trust_remote_code=ctx.trust_remote_code)
        scores = importance.block_influence(
            src,
            samples,
            device=params.device,
            trust_remote_code=ctx.trust_remote_code,
            pad_id=int(tokenizer.pad_token_id or 0),
        )
        drop = tuple(importance.least_important(scores, n - params.keep))
        importance.save_scores(out, scores, drop, samples=len(samples))
        ctx.log(importance.format_scores(scores, drop))
        result.update(selection="block_influence", block_influence=[round(s, 6) for s in scores])
    result.update(prune_checkpoint(src, out, drop))
    ctx.log(f"prune: dropped layers {result['dropped']}, {result['layers_after']} of {n} kept")
    return result
