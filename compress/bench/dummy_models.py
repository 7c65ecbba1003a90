"""Config-only model folders (no weights) for speed benchmarks with vLLM's ``load_format="dummy"``.

Real EXAONE weights cannot be fetched here, yet decode speed depends only on the shapes: vLLM fills a
config-only folder with random weights of exactly those shapes. Each folder gets the real model's config (or a
``tiny`` scale-down that runs on a CPU in seconds), optionally the compressed-tensors W4A16 block that
llm-compressor 0.14 writes, and a stand-in tokenizer: byte-level BPE trained on local text, padded to the
model's vocab size so that every id a random model emits decodes, with EXAONE's chat format and special
tokens. Generated text is meaningless by design; only its timing counts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from compress.core import paths
from compress.core.errors import CompressError
from compress.folders.atomic import atomic_folder, folder_lock, is_complete

SPECIAL_TOKENS = ["[PAD]", "[BOS]", "[EOS]", "[UNK]", "[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]"]
"""Trained first, so their ids are 0..7: pad 0, bos 1, eos ``[|endofturn|]`` 7 (as in the configs below)."""
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}[|system|]{{ message['content'] }}[|endofturn|]\n"
    "{% elif message['role'] == 'user' %}[|user|]{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}[|assistant|]{{ message['content'] }}[|endofturn|]\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}[|assistant|]{% endif %}"
)
TOKEN_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 7}

W4A16_GROUP_SIZE = 128
W4A16 = {
    "config_groups": {
        "group_0": {
            "format": "pack-quantized",
            "targets": ["Linear"],
            "weights": {
                "group_size": W4A16_GROUP_SIZE,
                "num_bits": 4,
                "strategy": "group",
                "symmetric": False,
                "type": "int",
                "dynamic": False,
                "observer": "memoryless_minmax",
                "zp_dtype": "torch.int8",
            },
        }
    },
    "format": "pack-quantized",
    "ignore": ["lm_head"],
    "quant_method": "compressed-tensors",
    "quantization_status": "compressed",
    "version": "0.17.0",
}
"""The quantization_config llm-compressor 0.14 writes for W4A16 (AWQ/GPTQ), group 128, asymmetric; it ran
on the H200 through vLLM's Machete kernel (shared/gpu/README.md)."""

MODELS = ("exaone4-1.2b", "exaone3.5-2.4b")
SHAPES = ("full", "tiny")
VARIANTS = ("base", "l29", "w4a16", "l29-w4a16")


@dataclass(frozen=True)
class Dims:
    """The sizes that decide speed."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int


# EXAONE-4.0-1.2B: 30 layers, all full attention (no sliding window), tied embeddings (shared/ENVIRONMENT.md).
# EXAONE-3.5-2.4B: 30 layers, hidden 2560, FFN 7168, 32/8 heads of 80, tied embeddings (its config.json).
# tiny: the same layout at a size a 2-core CPU runs in seconds; head_dim stays 64 (vLLM CPU's smallest).
DIMS: dict[tuple[str, str], Dims] = {
    ("exaone4-1.2b", "full"): Dims(102400, 2048, 4096, 30, 32, 8, 64),
    ("exaone3.5-2.4b", "full"): Dims(102400, 2560, 7168, 30, 32, 8, 80),
    ("exaone4-1.2b", "tiny"): Dims(4096, 256, 512, 4, 4, 2, 64),
    ("exaone3.5-2.4b", "tiny"): Dims(4096, 256, 512, 4, 4, 2, 64),
}
_LLAMA3_ROPE = {
    "rope_type": "llama3",
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
}


def variant_layers(dims: Dims, variant: str) -> int:
    """``l29`` variants drop one decoder layer (30 -> 29 for the real models)."""
    return dims.layers - 1 if variant.startswith("l29") else dims.layers


def is_w4a16(variant: str) -> bool:
    return variant.endswith("w4a16")


def model_config(model: str, variant: str, shape: str = "full") -> dict:
    """The config.json of one benchmark variant."""
    check_choice("model", model, MODELS)
    check_choice("variant", variant, VARIANTS)
    check_choice("shape", shape, SHAPES)
    dims = DIMS[(model, shape)]
    layers = variant_layers(dims, variant)
    common = {
        "vocab_size": dims.vocab,
        "hidden_size": dims.hidden,
        "intermediate_size": dims.intermediate,
        "num_attention_heads": dims.heads,
        "num_key_value_heads": dims.kv_heads,
        "head_dim": dims.head_dim,
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        **TOKEN_IDS,
    }
    if model == "exaone4-1.2b":
        config = {
            "architectures": ["Exaone4ForCausalLM"],
            "model_type": "exaone4",
            **common,
            "num_hidden_layers": layers,
            "hidden_act": "silu",
            "max_position_embeddings": 65536,
            "rms_norm_eps": 1e-5,
            "rope_scaling": {**_LLAMA3_ROPE, "factor": 16.0},
            "layer_types": ["full_attention"] * layers,
            "sliding_window": None,
            "sliding_window_pattern": None,
        }
    else:  # EXAONE 3.x: its own config class, which only the model's remote code defines
        config = {
            "architectures": ["ExaoneForCausalLM"],
            "model_type": "exaone",
            **common,
            "num_layers": layers,
            "num_hidden_layers": layers,
            "activation_function": "silu",
            "max_position_embeddings": 32768,
            "layer_norm_epsilon": 1e-5,
            "embed_dropout": 0.0,
            "rope_scaling": {**_LLAMA3_ROPE, "factor": 8.0},
        }
    if is_w4a16(variant):
        config["quantization_config"] = copy.deepcopy(W4A16)
    return config


def check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise CompressError(f"unknown {what} {value!r}", f"use one of: {', '.join(allowed)}")


# --- weight bytes read per decode step (the physical limit) ------------------------------------------------


def weight_bytes_per_step(config: dict, *, activation_bytes: int = 2) -> dict[str, float]:
    """Bytes of weights one decode step must read from memory, from the config alone.

    Formula (every term per step, batch-independent):
      linear params  P_lin = L * [h*(H*d) + 2*h*(K*d) + (H*d)*h + 3*h*f]   (q, k, v, o, gate, up, down)
      16-bit         bytes_lin = P_lin * 2
      W4A16 (g=128)  bytes_lin = P_lin * 0.5 + (P_lin / g) * (2 + 0.5 if asymmetric)
                     (4-bit weights, one 16-bit scale per group, one 4-bit zero point per group if asym)
      LM head        V*h * 2 (kept 16-bit: 'ignore: [lm_head]'); with tied embeddings it is the embedding
                     matrix, counted once: the input lookup reads only one row per sequence
      norms          (2*L + 1)*h * 2 (+ 2*L*d*2 for EXAONE-4's q/k norms): negligible, counted anyway
    The KV cache read per step (batch x context x L x 2*K*d x 2 bytes) is left out: tens of MB at these
    prompt lengths, against GBs of weights.
    """
    h = config["hidden_size"]
    f = config["intermediate_size"]
    v = config["vocab_size"]
    layers = config.get("num_hidden_layers") or config["num_layers"]
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    d = config.get("head_dim") or h // heads
    linear = layers * (h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * f)
    quant = config.get("quantization_config")
    if quant:
        weights = next(iter(quant["config_groups"].values()))["weights"]
        bits, group = weights["num_bits"], weights["group_size"]
        per_group = activation_bytes + (0 if weights.get("symmetric", True) else bits / 8)
        linear_bytes = linear * bits / 8 + linear / group * per_group
    else:
        linear_bytes = linear * activation_bytes
    head_bytes = v * h * activation_bytes
    norms = (2 * layers + 1) * h + (2 * layers * d if config.get("model_type") == "exaone4" else 0)
    norm_bytes = norms * activation_bytes
    total = linear_bytes + head_bytes + norm_bytes
    params = linear + v * h + norms
    return {"params": float(params), "linear_bytes": linear_bytes, "head_bytes": float(head_bytes), "total": total}


# --- the stand-in tokenizer ---------------------------------------------------------------------------------


def default_corpus(max_bytes: int) -> list[Path]:
    """Python's own standard library sources (present wherever Python is), sorted, up to ``max_bytes``."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for path in sorted(stdlib.rglob("*.py")):
        if "test" in path.relative_to(stdlib).parts[:1] or not path.is_file():
            continue
        try:  # the trainer stops at the first file that is not UTF-8 (a few stdlib test files are not)
            size = len(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
        files.append(path)
        total += size
        if total >= max_bytes:
            break
    if not files:
        raise CompressError(f"no Python sources found under {stdlib}", "pass --tokenizer-dir with a built tokenizer")
    return files


def tokenizer_cache_dir(vocab: int) -> Path:
    return paths.home() / "bench" / f"tokenizer-v{vocab}"


def build_tokenizer(dest: Path, vocab: int, corpus: list[Path]) -> Path:
    """Train a byte-level BPE with ``vocab`` ids on ``corpus`` and write a complete tokenizer folder (atomic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    with atomic_folder(dest, info={"kind": "bench stand-in tokenizer", "vocab": vocab}) as tmp:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab,
            min_frequency=2,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train([str(p) for p in corpus], trainer)
        trained = tok.get_vocab_size()
        path = tmp / "tokenizer.json"
        tok.save(str(path))
        if trained < vocab:  # pad with filler entries so every id a random model emits decodes
            data = json.loads(path.read_text(encoding="utf-8"))
            table = data["model"]["vocab"]
            for i in range(trained, vocab):
                table[f"<f{i}>"] = i
            path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
            tok = Tokenizer.from_file(str(path))
        if tok.get_vocab_size() != vocab:
            raise CompressError(
                f"stand-in tokenizer has {tok.get_vocab_size()} ids, not {vocab}", "report this as a bug"
            )
        ids = {s: tok.token_to_id(s) for s in SPECIAL_TOKENS}
        if ids["[PAD]"] != 0 or ids["[BOS]"] != 1 or ids["[|endofturn|]"] != 7:
            raise CompressError(f"special token ids moved: {ids}", "keep SPECIAL_TOKENS in their order")
        specials = {"bos_token": "[BOS]", "eos_token": "[|endofturn|]", "pad_token": "[PAD]", "unk_token": "[UNK]"}
        (tmp / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "tokenizer_class": "PreTrainedTokenizerFast",
                    **specials,
                    "model_max_length": 65536,
                    "clean_up_tokenization_spaces": False,
                    "chat_template": CHAT_TEMPLATE,
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        (tmp / "special_tokens_map.json").write_text(json.dumps(specials, indent=1), encoding="utf-8")
        (tmp / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    return dest


def ensure_tokenizer(vocab: int, tokenizer_dir: Path | None = None, *, corpus_bytes: int | None = None) -> Path:
    """The stand-in tokenizer for ``vocab`` ids: ``tokenizer_dir`` if given (checked), else a cached one,
    built on first use (about a minute for 102400 ids on two cores; small vocabs take seconds)."""
    if tokenizer_dir is not None:
        folder = Path(tokenizer_dir)
        if not (folder / "tokenizer.json").is_file():
            raise CompressError(
                f"--tokenizer-dir {folder} has no tokenizer.json",
                "pass a folder made by an earlier bench run ($EXAONE_COMPRESSION_HOME/bench/tokenizer-v<vocab>)",
            )
        found = _vocab_size(folder / "tokenizer.json")
        if found != vocab:
            raise CompressError(
                f"--tokenizer-dir {folder} has {found} ids but the model has {vocab}",
                f"pass a tokenizer with {vocab} ids, or leave --tokenizer-dir out to build one",
            )
        return folder
    dest = tokenizer_cache_dir(vocab)
    with folder_lock(dest):
        if not is_complete(dest):
            budget = corpus_bytes or (40_000_000 if vocab > 32_000 else 2_000_000)
            print(f"building the stand-in tokenizer ({vocab} ids) into {dest} ...", flush=True)
            build_tokenizer(dest, vocab, default_corpus(budget))
    return dest


def _vocab_size(tokenizer_json: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_json)).get_vocab_size()


def tokenizer_fingerprint(folder: Path) -> str:
    """sha256 (16 hex) of tokenizer.json: prompt token counts are comparable only under one tokenizer."""
    return hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest()[:16]


def write_variant(dest: Path, config: dict, tokenizer_dir: Path) -> Path:
    """One config-only model folder: config, generation config, tokenizer files (atomic, rewritten)."""
    with atomic_folder(dest, info={"kind": "bench config-only model (load_format=dummy)"}) as tmp:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
            source = tokenizer_dir / name
            if source.is_file():
                (tmp / name).write_bytes(source.read_bytes())
        (tmp / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        (tmp / "generation_config.json").write_text(json.dumps(TOKEN_IDS), encoding="utf-8")
    return dest


def write_variants(model: str, variants: list[str], *, shape: str, root: Path, tokenizer_dir: Path) -> dict[str, Path]:
    """Every requested variant of ``model`` under ``root/<model>-<shape>/<variant>``."""
    folders = {}
    for variant in variants:
        dest = root / f"{model}-{shape}" / variant
        folders[variant] = write_variant(dest, model_config(model, variant, shape), tokenizer_dir)
    return folders
