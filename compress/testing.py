"""Model folders made wrong on purpose, for tests that must see eval-compare, verify or the gate catch them.

Each maker takes a good folder and writes a variant beside nothing else: unchanged files are hard-linked
(no copy of the weights), changed ones are written fresh, so the source is never modified.

- :func:`link_copy`: the same model under another name (exact match 1.0 with its source).
- :func:`zero_final_norm`: the final norm's weight set to 0, so every logit is 0 and greedy decoding picks
  token id 0 at every step; for a tokenizer whose id 0 is a special token that decodes to ``""``, the answer
  is empty whatever the prompt (the silent failure the old scripts let through).
- :func:`corrupt_weights`: config and tokenizer intact, weights unreadable: passes the folder checks and
  fails inside the engine's load.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from compress.models.atomic import MANIFEST

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


# The local base models the tests run on: folder name under sources/, and the function that makes it.
LOCAL_MODELS = {
    "smollm2": ("smollm2-135m-instruct", "compress.models.smollm2", "make_smollm2"),
    "tiny-exaone4": ("tiny-exaone4", "compress.models.tiny_exaone4", "make_tiny_exaone4"),
}


def local_model(key: str) -> Path:
    """The folder of a local base model; made here if this environment can (the builder env), else an error
    that says which command makes it. A complete folder (with its manifest) is used as it is."""
    import importlib

    from compress import paths
    from compress.errors import CompressError
    from compress.models.atomic import is_complete

    name, module_name, maker = LOCAL_MODELS[key]
    folder = paths.sources_dir() / name
    if is_complete(folder):
        return folder
    try:
        return Path(getattr(importlib.import_module(module_name), maker)())
    except (ImportError, AttributeError, CompressError) as exc:
        raise CompressError(
            f"local model {folder} is missing and cannot be made in this environment ({exc})",
            "run `python -m compress make-models` in the builder environment (tox -e compress) first, "
            "with the same EXAONE_COMPRESSION_HOME",
        ) from None
