"""EXAONE 3.x <-> Llama layout: one network under two sets of names, converted exactly (renames only).

EXAONE 3.0/3.5 (``ExaoneForCausalLM``, ``model_type: exaone``) is a Llama decoder: pre-norm RMSNorm, RoPE
(neox style, llama3 scaling in 3.5), grouped-query attention without biases, a SwiGLU MLP. Only the names
differ (vLLM's ``models/exaone.py`` and ``models/llama.py`` hold the same layers)::

    transformer.wte                      model.embed_tokens
    transformer.h.N.ln_1                 model.layers.N.input_layernorm
    transformer.h.N.attn.attention.q_proj / k_proj / v_proj   model.layers.N.self_attn.q_proj / k_proj / v_proj
    transformer.h.N.attn.attention.out_proj                   model.layers.N.self_attn.o_proj
    transformer.h.N.ln_2                 model.layers.N.post_attention_layernorm
    transformer.h.N.mlp.c_fc_0 / c_fc_1 / c_proj              model.layers.N.mlp.gate_proj / up_proj / down_proj
    transformer.ln_f                     model.norm
    lm_head                              lm_head

and config keys (``num_layers`` -> ``num_hidden_layers``, ``layer_norm_epsilon`` -> ``rms_norm_eps``,
``activation_function`` -> ``hidden_act``). Why convert rather than teach every tool EXAONE 3: transformers
has no EXAONE 3 class (only the checkpoint's remote code, which cannot be fetched here and is not kept up with
transformers 5), llm-compressor has no AWQ mapping for it, and vLLM has the model but not its config class.
In the Llama layout HF, llm-compressor (its Llama AWQ mapping) and vLLM all load it natively. Tensors are
renamed, never touched, so the conversion is exact both ways; keys of the EXAONE config that Llama has no
use for (``embed_dropout``, ``auto_map``, ...) travel in ``config.json``'s ``exaone3_layout`` entry so that
converting back restores the original config.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from compress.core.errors import CompressError

EXAONE3 = "ExaoneForCausalLM"
LLAMA = "LlamaForCausalLM"
STASH = "exaone3_layout"
"""The Llama config's record of what the EXAONE config held that Llama does not use."""
INDEX_FILE = "model.safetensors.index.json"

# Inside one decoder layer: EXAONE module path -> Llama module path.
_BLOCK = (
    ("ln_1", "input_layernorm"),
    ("attn.attention.q_proj", "self_attn.q_proj"),
    ("attn.attention.k_proj", "self_attn.k_proj"),
    ("attn.attention.v_proj", "self_attn.v_proj"),
    ("attn.attention.out_proj", "self_attn.o_proj"),
    ("ln_2", "post_attention_layernorm"),
    ("mlp.c_fc_0", "mlp.gate_proj"),
    ("mlp.c_fc_1", "mlp.up_proj"),
    ("mlp.c_proj", "mlp.down_proj"),
)
_TOP = (("transformer.wte", "model.embed_tokens"), ("transformer.ln_f", "model.norm"), ("lm_head", "lm_head"))
_LAYER = {"exaone3": re.compile(r"^transformer\.h\.(\d+)\.(.+)$"), "llama": re.compile(r"^model\.layers\.(\d+)\.(.+)$")}
_PREFIX = {"exaone3": "transformer.h.", "llama": "model.layers."}
# Derived buffers some checkpoints carry; the model recomputes them from the config.
_DERIVED = re.compile(r"(^|\.)(rotary|rotary_emb)\.inv_freq$")

# Config: EXAONE key -> Llama key; keys both use as they are; keys the Llama form adds.
_RENAMED = {
    "num_layers": "num_hidden_layers",
    "layer_norm_epsilon": "rms_norm_eps",
    "activation_function": "hidden_act",
}
_SHARED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "rope_theta",
    "rope_scaling",
    "tie_word_embeddings",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "initializer_range",
    "attention_dropout",
    "use_cache",
    "torch_dtype",
    "dtype",
    "quantization_config",
    "transformers_version",
)


def _rename(key: str, src: str, dst: str) -> str | None:
    """``key`` from layout ``src`` to ``dst`` (suffix kept: .weight, .weight_packed, .weight_scale...), or None
    for a name outside the shared structure."""
    pairs = [(a, b) if src == "exaone3" else (b, a) for a, b in _BLOCK]
    top = [(a, b) if src == "exaone3" else (b, a) for a, b in _TOP]
    match = _LAYER[src].match(key)
    if match:
        index, rest = match.groups()
        for old, new in pairs:
            if rest.startswith(old + "."):
                return f"{_PREFIX[dst]}{index}.{new}{rest[len(old) :]}"
        return None
    for old, new in top:
        if key.startswith(old + "."):
            return new + key[len(old) :]
    return None


def to_llama_key(key: str) -> str | None:
    """An EXAONE 3 tensor name in the Llama layout (None: not part of the network)."""
    return _rename(key, "exaone3", "llama")


def to_exaone3_key(key: str) -> str | None:
    """A Llama tensor name in the EXAONE 3 layout (None: not part of the network)."""
    return _rename(key, "llama", "exaone3")


def is_exaone3(config: dict) -> bool:
    return (config.get("architectures") or [None])[0] == EXAONE3 or config.get("model_type") == "exaone"


def was_exaone3(config: dict) -> bool:
    """A Llama-layout config converted from EXAONE 3 by :func:`to_llama_config`."""
    return isinstance(config.get(STASH), dict)


def check_convertible(config: dict) -> None:
    """Refuse an EXAONE config whose block is not the Llama block (the conversion would not be exact)."""
    act = config.get("activation_function", "silu")
    if act != "silu":
        raise CompressError(
            f"this EXAONE 3 config uses activation {act!r}; only silu (SwiGLU) maps exactly onto the Llama layout",
            "use an EXAONE 3.0/3.5 checkpoint as LG AI Research released it",
        )
    for key in ("bias", "attention_bias", "mlp_bias"):
        if config.get(key):
            raise CompressError(
                f"this EXAONE 3 config sets {key}=true, which EXAONE 3.0/3.5 never do",
                "check that config.json belongs to the weights",
            )


def to_llama_config(config: dict) -> dict:
    """The Llama config of an EXAONE 3 config. Pure."""
    if not is_exaone3(config):
        raise CompressError("this config is not EXAONE 3.x (ExaoneForCausalLM)", "convert an EXAONE 3 folder")
    check_convertible(config)
    heads = config.get("num_attention_heads")
    hidden = config.get("hidden_size")
    if not isinstance(config.get("num_layers", config.get("num_hidden_layers")), int) or not heads or not hidden:
        raise CompressError(
            "the EXAONE 3 config lacks num_layers, hidden_size or num_attention_heads", "check config.json"
        )
    out: dict[str, Any] = {"architectures": [LLAMA], "model_type": "llama"}
    stash: dict[str, Any] = {"dropped": {}, "added": []}
    for key, value in config.items():
        if key in _RENAMED:
            out[_RENAMED[key]] = copy.deepcopy(value)
        elif key in _SHARED:
            out[key] = copy.deepcopy(value)
        elif key == "num_hidden_layers":  # some writers keep both names; it follows num_layers on the way back
            stash["num_hidden_layers"] = True
        elif key not in ("architectures", "model_type"):
            stash["dropped"][key] = copy.deepcopy(value)
    out["num_hidden_layers"] = config.get("num_layers", config.get("num_hidden_layers"))
    defaults = {
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "head_dim": hidden // heads,
        "num_key_value_heads": heads,
        "attention_bias": False,
        "mlp_bias": False,
    }
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
            stash["added"].append(key)
    stash["original"] = {"architectures": config.get("architectures"), "model_type": config.get("model_type")}
    out[STASH] = stash
    return out


def to_exaone3_config(config: dict) -> dict:
    """The EXAONE 3 config of a Llama config: the inverse of :func:`to_llama_config` (exact for a config it
    wrote), and a plain EXAONE config for any other Llama config. Pure."""
    arch = (config.get("architectures") or [None])[0]
    if arch != LLAMA:
        raise CompressError(f"this config is {arch}, not LlamaForCausalLM", "convert a Llama-layout folder")
    stash = config.get(STASH) or {"dropped": {}, "added": ["attention_bias", "mlp_bias"], "original": {}}
    back = {v: k for k, v in _RENAMED.items()}
    original = stash.get("original") or {}
    out: dict[str, Any] = {
        "architectures": original.get("architectures") or [EXAONE3],
        "model_type": original.get("model_type") or "exaone",
    }
    llama_only = {"architectures", "model_type", STASH, "pretraining_tp", *stash.get("added", [])}
    for key, value in config.items():
        if key in llama_only:
            continue
        if key in back:
            out[back[key]] = copy.deepcopy(value)
        elif key == "rope_parameters":  # written by transformers 5: EXAONE configs keep the 4.x form
            params = dict(value or {})
            out["rope_theta"] = params.pop("rope_theta", out.get("rope_theta", 10000.0))
            out["rope_scaling"] = params if params.get("rope_type", "default") != "default" else None
        elif key in ("attention_bias", "mlp_bias") and not value:
            continue
        else:
            out[key] = copy.deepcopy(value)
    if stash.get("num_hidden_layers"):
        out["num_hidden_layers"] = out["num_layers"]
    out.update(copy.deepcopy(stash.get("dropped", {})))
    return out


def convert_folder(src: Path, out: Path, *, to: str, like: dict | None = None) -> dict[str, Any]:
    """Write ``src`` in layout ``to`` ("llama" or "exaone3") into the existing folder ``out``: every
    safetensors shard renamed tensor by tensor, the index and config rewritten, every other file (tokenizer,
    chat template, generation config) copied. ``like``: the EXAONE config a Llama folder came from, when its
    own config lost the record (a model saved by transformers). Returns a summary (tensors renamed, derived
    buffers dropped)."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    from compress.folders.checks import read_config

    config = read_config(src)
    if to == "exaone3" and like is not None and not was_exaone3(config) and not is_exaone3(config):
        config = {**config, STASH: to_llama_config(like)[STASH]}
    if to == "llama":
        new_config, rename, source = to_llama_config(config), to_llama_key, "EXAONE 3"
        already = to_exaone3_key
    elif to == "exaone3":
        # llm-compressor re-saves the config of the folder a model came from (EXAONE's, with the
        # quantization_config added): then only the tensors need their EXAONE names.
        new_config = copy.deepcopy(config) if is_exaone3(config) else to_exaone3_config(config)
        rename, source, already = to_exaone3_key, "Llama", to_llama_key
    else:
        raise CompressError(f"unknown layout {to!r}", "use llama or exaone3")
    index_path = src / INDEX_FILE
    index = json.loads(index_path.read_text(encoding="utf-8")) if index_path.is_file() else None
    shards = sorted(set(index["weight_map"].values())) if index else sorted(p.name for p in src.glob("*.safetensors"))
    if not shards:
        raise CompressError(f"model folder {src} has no safetensors weights", "point at a complete model folder")
    weight_map: dict[str, str] = {}
    dropped: list[str] = []
    renamed = 0
    for shard in shards:
        tensors = {}
        with safe_open(str(src / shard), framework="pt") as handle:
            metadata = handle.metadata() or {"format": "pt"}
            for key in handle.keys():
                new_key = rename(key)
                if new_key is None and already(key):
                    # transformers 5 saves a model loaded with key_mapping under the checkpoint's own names
                    new_key = key
                if new_key is None and _DERIVED.search(key):
                    dropped.append(key)
                    continue
                if new_key is None:
                    raise CompressError(
                        f"{src / shard} holds tensor {key!r}, which has no place in the {source} layout",
                        "convert a folder saved by the model's own code (no extra tensors)",
                    )
                tensors[new_key] = handle.get_tensor(key)
                renamed += 1
        save_file(tensors, str(out / shard), metadata=metadata)
        weight_map.update(dict.fromkeys(tensors, shard))
    if index is not None:
        new_index = {"metadata": index.get("metadata", {}), "weight_map": dict(sorted(weight_map.items()))}
        (out / INDEX_FILE).write_text(json.dumps(new_index, indent=2) + "\n", encoding="utf-8")
    (out / "config.json").write_text(json.dumps(new_config, indent=2) + "\n", encoding="utf-8")
    skip = {"config.json", INDEX_FILE, "manifest.json"}
    for path in sorted(src.iterdir()):
        side_file = path.is_file() and path.name not in skip and path.suffix != ".safetensors"
        if side_file and not path.name.endswith(".lock") and not (out / path.name).exists():
            shutil.copy2(path, out / path.name)
    return {"to": to, "tensors": renamed, "dropped": dropped, "shards": len(shards)}


def register_config(folder: str | Path) -> bool:
    """For an EXAONE 3 folder, register its config class with ``AutoConfig`` (what ``AutoTokenizer`` and vLLM
    resolve first; the checkpoint's own class is remote code). Returns whether the folder is EXAONE 3."""
    from compress.folders.checks import read_config

    if not is_exaone3(read_config(folder)):
        return False
    from compress.folders.exaone3_config import register

    register()
    return True


def hf_load_kwargs(folder: str | Path) -> dict[str, Any]:
    """``from_pretrained`` keywords that load an EXAONE 3 folder in place as ``LlamaForCausalLM`` (the config
    converted, tensors renamed on load): HF without remote code. Empty for any other folder. Registers the
    EXAONE config class too (:func:`register_config`), so call it before loading the tokenizer."""
    from compress.folders.checks import read_config

    if not register_config(folder):
        return {}
    config = read_config(folder)
    from transformers import LlamaConfig

    llama = to_llama_config(config)
    llama.pop(STASH)
    mapping = {r"^transformer\.wte\.": "model.embed_tokens.", r"^transformer\.ln_f\.": "model.norm."}
    for old, new in _BLOCK:
        mapping[rf"^transformer\.h\.(\d+)\.{re.escape(old)}\."] = rf"model.layers.\1.{new}."
    return {"config": LlamaConfig.from_dict(llama), "key_mapping": mapping}
