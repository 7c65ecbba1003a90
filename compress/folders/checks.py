"""Check a model folder before anything loads it, so a bad folder fails with a fix, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from compress.core.errors import CompressError

# Architectures the builders and engines know. EXAONE 3.x runs without its remote code: HF loads it as the
# Llama network it is and vLLM gets its config class from here (compress/folders/exaone3.py).
SUPPORTED_ARCHITECTURES = {
    "Exaone4ForCausalLM": "EXAONE 4.0",
    "ExaoneForCausalLM": "EXAONE 3.0/3.5 (no remote code needed)",
    "LlamaForCausalLM": "llama layout (SmolLM2 and friends)",
    "Qwen2ForCausalLM": "llama layout (Qwen2, Qwen2.5)",
    "MistralForCausalLM": "llama layout (Mistral)",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
INDEX_FILE = "model.safetensors.index.json"
PICKLED = ("*.bin", "*.pt", "*.pth")


def read_config(model_dir: str | Path) -> dict:
    """config.json of a folder, with a one-line error when the folder or the file is missing or broken."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise CompressError(
            f"model folder {folder} does not exist",
            "pass the path of a Hugging Face model folder (build it with `python -m compress build`)",
        )
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CompressError(f"model folder {folder} has no config.json", "point at a complete model folder")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompressError(f"{config_file} is not valid JSON ({exc})", "rebuild or restore the folder") from None
    if not isinstance(config, dict):
        raise CompressError(
            f"{config_file} holds a JSON {type(config).__name__}, not an object", "rebuild or restore the folder"
        )
    return config


def is_quantized(config: dict) -> bool:
    """True for 4-bit compressed-tensors/AWQ folders, which need vLLM's 4-bit kernels or HF's decompression."""
    return bool(config.get("quantization_config"))


def check_model_folder(
    model_dir: str | Path, *, need_chat_template: bool = True, trust_remote_code: bool = False
) -> dict:
    """Validate a folder: config, safetensors weights, tokenizer, chat template, a known architecture.

    Returns the parsed config. Only safetensors weights are accepted: pickled ``.bin`` files can run code.
    """
    folder = Path(model_dir)
    config = read_config(folder)
    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    if arch not in SUPPORTED_ARCHITECTURES:
        known = ", ".join(SUPPORTED_ARCHITECTURES)
        what = f"unsupported architecture {arch!r}" if arch else "no architectures list in config.json"
        raise CompressError(f"model folder {folder} has {what}", f"use one of: {known}")
    if not any(p.is_file() for p in folder.glob("*.safetensors")):
        has_bin = any(p.is_file() for pattern in PICKLED for p in folder.glob(pattern))
        raise CompressError(
            f"model folder {folder} has no safetensors weights" + (" (only pickled .bin/.pt)" if has_bin else ""),
            "save the model with save_pretrained(safe_serialization=True); pickled weights are never loaded",
        )
    missing = _missing_shards(folder)
    if missing:
        raise CompressError(
            f"model folder {folder} lacks weight shards its {INDEX_FILE} lists: {', '.join(missing[:3])}"
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""),
            "copy the missing shards, or rebuild the folder",
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CompressError(
            f"model folder {folder} has no tokenizer (tokenizer.json)",
            "copy the base model's tokenizer files into the folder (tokenizer.save_pretrained)",
        )
    if need_chat_template and not has_chat_template(folder):
        raise CompressError(
            f"model folder {folder} has no chat template",
            "copy chat_template.jinja (or tokenizer_config.json's chat_template) from the base model; "
            "without it chat models answer nothing useful",
        )
    return config


def _missing_shards(folder: Path) -> list[str]:
    """Shards a sharded checkpoint's index names that are not in the folder (a half-copied download)."""
    index = folder / INDEX_FILE
    if not index.is_file():
        return []
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        weight_map = None
    if not isinstance(weight_map, dict):
        raise CompressError(f"{index} is not a valid safetensors index", "rebuild or restore the folder")
    return sorted({str(s) for s in weight_map.values() if not (folder / str(s)).is_file()})


def has_chat_template(model_dir: str | Path) -> bool:
    folder = Path(model_dir)
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        try:
            data = json.loads(tok_config.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        return isinstance(data, dict) and bool(data.get("chat_template"))
    return False
