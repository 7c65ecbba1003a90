"""What several steps share: parameters' base class, the build context, side files, layers, training data.

Training and calibration data are the project's *training* prompts (``load_training_prompts()``) with the
base model's own greedy answers, or a user's text file. The gate's prompts are never used here: a variant
trained on them would pass the gate by memorisation. The base's answers are generated once per base and
kept in a cache, because distillation, importance scoring and AWQ calibration all read them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from compress.core.atomicio import write_text_atomic
from compress.core.errors import CompressError

log = logging.getLogger(__name__)

# Files a step writes itself; everything else in a model folder (tokenizer, chat template, generation
# config, remote code) is carried over byte for byte.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# block_influence.json and recipe.yaml describe the step that wrote them, not the next one.
NOT_CARRIED = {
    "config.json",
    "manifest.json",
    "model.safetensors.index.json",
    "recipe.yaml",
    "block_influence.json",
}


class StepParams(BaseModel):
    """Base of every step's parameters: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class BuildContext:
    """What a step may need beyond its input folder."""

    base_dir: Path
    """The matrix's base model: the distillation teacher and the source of calibration answers."""
    trust_remote_code: bool = False
    """Only EXAONE 3.x folders need it (their modeling code lives in the folder); off unless asked for."""
    cache_dir: Path | None = None
    """Where the base's answers to the training prompts are kept (None: not kept)."""
    log: Callable[[str], None] = print
    teachers: dict[str, Path] = field(default_factory=dict)
    """Distill teachers a recipe names (``teacher = "..."``), resolved to folders by the build."""
    extra: dict[str, Any] = field(default_factory=dict)

    def teacher_dir(self, name: str | None) -> Path:
        """The folder of a distill step's teacher: the base when unnamed."""
        if name is None:
            return self.base_dir
        if name not in self.teachers:
            raise CompressError(
                f"distill teacher {name!r} was not resolved before the build",
                "name a local model (python -m compress make-models) or a model folder",
            )
        return self.teachers[name]


def carry_side_files(src: Path, dst: Path) -> list[str]:
    """Copy tokenizer, chat template, generation config and other non-weight files that ``dst`` lacks."""
    copied = []
    for path in sorted(src.iterdir()):
        if not path.is_file() or path.name in NOT_CARRIED or path.suffix in WEIGHT_SUFFIXES:
            continue
        if path.name.endswith(".lock") or (dst / path.name).exists():
            continue
        shutil.copy2(path, dst / path.name)
        copied.append(path.name)
    return copied


def link_model_files(src: Path, out: Path) -> str:
    """Every file of a model folder into ``out``, hard-linked where the file system allows (else copied),
    minus files that describe how ``src`` was made. Returns "hardlink" or "copy"."""
    how = "hardlink"
    for path in sorted(src.iterdir()):
        if not path.is_file() or path.name in NOT_CARRIED - {"config.json", "model.safetensors.index.json"}:
            continue
        if path.name.endswith(".lock"):
            continue
        try:
            os.link(path, out / path.name)
        except OSError:
            shutil.copy2(path, out / path.name)
            how = "copy"
    return how


def pick_device(requested: str = "auto") -> str:
    """``auto``: CUDA when there is a GPU (real EXAONE models), else the CPU (the local models)."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise CompressError(f"device {requested!r} was asked for but no CUDA GPU is visible", 'use device = "auto"')
    return requested


def decoder_layers(model: Any) -> Any:
    """The model's list of decoder layers (``model.layers`` for llama/EXAONE 4, ``transformer.h`` for 3.x)."""
    for path in ("model.layers", "transformer.h", "model.decoder.layers"):
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise CompressError(
        f"cannot find the decoder layers of {type(model).__name__}",
        "use a llama-like, EXAONE 4 or EXAONE 3.x model",
    )


def load_causal_lm(folder: Path, *, dtype: str, device: str, trust_remote_code: bool = False) -> Any:
    """The model of a folder. EXAONE 3.x comes back as the ``LlamaForCausalLM`` it is (tensors renamed on
    load, no remote code); :func:`save_like` writes such a model back in the folder's own layout."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from compress.folders.exaone3 import hf_load_kwargs

    exaone3 = hf_load_kwargs(folder)
    model_class = LlamaForCausalLM if exaone3 else AutoModelForCausalLM
    model = model_class.from_pretrained(
        folder,
        dtype=getattr(torch, dtype),
        trust_remote_code=trust_remote_code and not exaone3,
        use_safetensors=True,
        **exaone3,
    )
    return model.to(device)


def save_like(model: Any, out: Path, src: Path, **save_kwargs: Any) -> str:
    """``model.save_pretrained(out)`` in the layout of ``src``, the folder the model was loaded from: an EXAONE
    3.x input is worked on as Llama and written back as EXAONE 3.x (renamed, exact), with its config's own
    keys. Returns the layout written ("exaone3" or "as loaded")."""
    import tempfile

    from compress.folders import exaone3

    source = read_config_dict(src)
    if not exaone3.is_exaone3(source):
        model.save_pretrained(out, **save_kwargs)
        return "as loaded"
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-llama-") as scratch:
        model.save_pretrained(scratch, **save_kwargs)
        exaone3.convert_folder(Path(scratch), out, to="exaone3", like=source)
    return "exaone3"


def read_config_dict(folder: Path) -> dict:
    from compress.folders.checks import read_config

    return read_config(folder)


def load_tokenizer(folder: Path, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    from compress.folders.exaone3 import register_config

    register_config(folder)  # EXAONE 3.x: AutoTokenizer resolves the config class first
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass(frozen=True)
class Sample:
    """One training or calibration sequence. Tokens from ``loss_start`` on are the ones to learn."""

    input_ids: tuple[int, ...]
    loss_start: int


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """A user turn rendered through the chat template, ending where the assistant's answer starts."""
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def eos_ids(folder: Path, tokenizer: Any) -> set[int]:
    """End-of-turn ids from generation_config.json (EXAONE: ``[|endofturn|]``), else the tokenizer's EOS."""
    found: set[int] = set()
    gen = folder / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text(encoding="utf-8")).get("eos_token_id")
        found |= set(eos) if isinstance(eos, list) else ({eos} if eos is not None else set())
    if not found and tokenizer.eos_token_id is not None:
        found.add(int(tokenizer.eos_token_id))
    return found


def base_answers(
    ctx: BuildContext,
    *,
    max_new_tokens: int,
    device: str = "auto",
    batch_size: int = 16,
    model_dir: Path | None = None,
    limit: int | None = None,
) -> list[Sample]:
    """The training prompts (chat template) with a model's greedy float32 answers, as token ids: the base's,
    or ``model_dir``'s (a distill teacher's). ``limit`` asks for the first ``limit`` only.

    The answers are the teacher's own: distilling on them asks the student to say what the teacher says.
    They are made and cached under ``ctx.cache_dir`` one batch at a time (a batch's key: the model's file
    hashes, that batch's prompts, ``batch_size`` and ``max_new_tokens``), so a step that reads the first few
    (importance scoring, AWQ calibration) waits only for those, and they are the same token for token as the
    ones a full run makes: each batch is generated alone, padded only to its own longest prompt.
    """
    from tqdm import tqdm

    from compress.core.prompts import load_training_prompts
    from compress.folders.manifest import folder_digest

    model_dir = model_dir or ctx.base_dir
    prompts = [p.text for p in load_training_prompts()]
    wanted = len(prompts) if limit is None else max(0, min(limit, len(prompts)))
    digest = folder_digest(model_dir)
    generator = _AnswerGenerator(ctx, model_dir, max_new_tokens, device)
    starts = range(0, wanted, batch_size)
    samples: list[Sample] = []
    try:
        for start in tqdm(starts, desc=f"{model_dir.name} answers (training prompts)", unit="batch"):
            chunk = prompts[start : start + batch_size]
            key_src = {
                "base": digest,
                "prompts": chunk,
                "batch_size": batch_size,
                "max_new_tokens": max_new_tokens,
                "format": 2,
            }
            samples += _cached_batch(ctx, key_src, lambda chunk=chunk: generator.answer(chunk))
    finally:
        generator.close()
    return samples[:wanted]


def _cached_batch(ctx: BuildContext, key_src: dict, make: Callable[[], list[Sample]]) -> list[Sample]:
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:24]
    cache_file = ctx.cache_dir / f"answers-{key}.json" if ctx.cache_dir else None
    if cache_file is not None and cache_file.is_file():
        data = json.loads(cache_file.read_text(encoding="utf-8"))
        return [Sample(tuple(s["input_ids"]), int(s["loss_start"])) for s in data["samples"]]
    samples = make()
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "key": key_src,
            "samples": [{"input_ids": s.input_ids, "loss_start": s.loss_start} for s in samples],
        }
        write_text_atomic(cache_file, json.dumps(payload))
    return samples


class _AnswerGenerator:
    """Greedy float32 answers through HF ``generate``; the model loads at the first batch not in the cache."""

    def __init__(self, ctx: BuildContext, model_dir: Path, max_new_tokens: int, device: str) -> None:
        self.ctx, self.model_dir, self.max_new_tokens, self.device = ctx, model_dir, max_new_tokens, device
        self.model: Any = None

    def _load(self) -> None:
        self.device = pick_device(self.device)
        trust = self.ctx.trust_remote_code
        self.tokenizer = load_tokenizer(self.model_dir, trust_remote_code=trust)
        self.model = load_causal_lm(self.model_dir, dtype="float32", device=self.device, trust_remote_code=trust)
        self.model.eval()
        self.stops = eos_ids(self.model_dir, self.tokenizer)
        self.pad = self.tokenizer.pad_token_id

    def answer(self, prompts: list[str]) -> list[Sample]:
        import torch

        if self.model is None:
            self._load()
        device, pad, stops = self.device, self.pad, self.stops
        chunk = [prompt_ids(self.tokenizer, p) for p in prompts]
        width = max(len(c) for c in chunk)
        ids = torch.tensor([[pad] * (width - len(c)) + c for c in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk], device=device)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=sorted(stops) or None,
            )
        samples: list[Sample] = []
        for row, prompt in zip(out[:, width:].tolist(), chunk, strict=True):
            answer = []
            for tok in row:
                answer.append(tok)
                if tok in stops:
                    break
            if answer and answer[-1] == pad and pad not in stops:
                while answer and answer[-1] == pad:
                    answer.pop()
            samples.append(Sample(tuple(prompt + answer), len(prompt)))
        return samples

    def close(self) -> None:
        self.model = None


def text_file_samples(path: Path, tokenizer: Any, *, max_tokens: int) -> list[Sample]:
    """A plain text file cut into ``max_tokens`` chunks; every token after the first is learned."""
    if not path.is_file():
        raise CompressError(f"training text file {path} does not exist", "set text_file to an existing file")
    ids = tokenizer(path.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    chunks = [ids[i : i + max_tokens] for i in range(0, len(ids), max_tokens)]
    samples = [Sample(tuple(c), 1) for c in chunks if len(c) > 1]
    if not samples:
        raise CompressError(f"training text file {path} holds no text", "put some text in it")
    return samples
