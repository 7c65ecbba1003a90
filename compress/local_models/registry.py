"""The local base models, made on this machine from PyPI packages: one registry for the builder, the CLI and
the tests. A recipe's ``base`` may name one of these keys instead of a folder."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from compress.core import paths
from compress.core.errors import CompressError, EmptyOutputError
from compress.folders.atomic import is_complete

CHECK_PROMPT = "hello"
"""What every made model must answer with visible text before its folder is kept."""


@dataclass(frozen=True)
class LocalModel:
    key: str
    """The name a recipe or ``make-models --only`` uses."""
    folder_name: str
    """Its folder under ``$EXAONE_COMPRESSION_HOME/sources``."""
    module: str
    maker: str
    """``module.maker(force=...)`` makes the folder (imported only when needed: it needs the builder env)."""

    @property
    def folder(self) -> Path:
        return paths.sources_dir() / self.folder_name

    def make(self, *, force: bool = False) -> Path:
        return Path(getattr(importlib.import_module(self.module), self.maker)(force=force))


LOCAL_MODELS = {
    m.key: m
    for m in (
        LocalModel("smollm2", "smollm2-135m-instruct", "compress.local_models.smollm2", "make_smollm2"),
        LocalModel("tiny-exaone4", "tiny-exaone4", "compress.local_models.tiny_exaone4", "make_tiny_exaone4"),
        LocalModel(
            "tiny-exaone4-teacher",
            "tiny-exaone4-teacher",
            "compress.local_models.tiny_exaone4",
            "make_tiny_exaone4_teacher",
        ),
        LocalModel("tiny-exaone3", "tiny-exaone3", "compress.local_models.tiny_exaone3", "make_tiny_exaone3"),
    )
}
"""In the order ``make-models`` makes them."""


def local_model(key: str) -> Path:
    """The folder of a local base model; made here if this environment can (the builder env), else an error
    that says which command makes it. A complete folder (with its manifest) is used as it is."""
    model = LOCAL_MODELS[key]
    if is_complete(model.folder):
        return model.folder
    try:
        return model.make()
    except (ImportError, AttributeError, CompressError) as exc:
        raise CompressError(
            f"local model {model.folder} is missing and cannot be made in this environment ({exc})",
            "run `python -m compress make-models` in the builder environment (tox -e compress) first, "
            "with the same EXAONE_COMPRESSION_HOME",
        ) from None


def check_answer(folder: Path, *, model: str, fix: str) -> dict:
    """One greedy float32 chat answer from a saved folder: proves it loads and talks before it is kept."""
    from compress.engines import SamplingConfig
    from compress.engines.hf_engine import HfEngine

    with HfEngine(str(folder), dtype="float32") as engine:
        answer = engine.chat([CHECK_PROMPT], SamplingConfig(max_tokens=32)).texts[0]
    if not answer.strip():
        raise EmptyOutputError(f"the {model} answers {CHECK_PROMPT!r} with nothing", fix)
    return {"prompt": CHECK_PROMPT, "answer": answer, "engine": "hf", "dtype": "float32"}
