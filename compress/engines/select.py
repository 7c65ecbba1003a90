"""Pick and open an engine for a model folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from compress.core.errors import CompressError
from compress.engines.base import Engine
from compress.folders.checks import check_model_folder, is_quantized

ENGINES = ("auto", "vllm", "hf")


def has_cuda() -> bool:
    """A usable CUDA device (False where torch itself is missing)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def choose_engine(model_dir: str | Path, requested: str = "auto", *, config: dict | None = None) -> str:
    """``auto`` means vLLM, except a 4-bit folder on a host without CUDA: vLLM's CPU 4-bit kernel
    (``cpu_gemm_wna16``) is built for AVX-512 only, so those folders go to HF, which decompresses on load."""
    if requested not in ENGINES:
        raise CompressError(f"unknown engine {requested!r}", f"use one of {', '.join(ENGINES)}")
    if requested != "auto":
        return requested
    vllm_installed = importlib.util.find_spec("vllm") is not None
    if not vllm_installed:
        return "hf"
    if config is not None and is_quantized(config) and not has_cuda():
        return "hf"
    return "vllm"


def default_dtype(config: dict, engine: str) -> str:
    """float32 wherever possible (portable greedy text); 4-bit kernels in vLLM need 16-bit activations."""
    if engine == "vllm" and is_quantized(config):
        return "bfloat16"
    return "float32"


def open_engine(
    model_dir: str | Path,
    *,
    engine: str = "auto",
    dtype: str | None = None,
    device: str | None = None,
    tensor_parallel_size: int = 1,
    trust_remote_code: bool = False,
    need_chat_template: bool = True,
    **vllm_kwargs: object,
) -> Engine:
    """Check the folder, then load it once in the chosen engine. Use the result as a context manager."""
    config = check_model_folder(
        model_dir, need_chat_template=need_chat_template, trust_remote_code=trust_remote_code
    )
    chosen = choose_engine(model_dir, engine, config=config)
    dtype = dtype or default_dtype(config, chosen)
    if chosen == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise CompressError(
                "vLLM is not installed in this environment",
                "run from the eval environment (tox -e eval-cpu, or tox -e gpu on CUDA), or pass --engine hf",
            )
        from compress.engines.vllm_engine import VllmEngine

        return VllmEngine(
            str(model_dir),
            dtype=dtype,
            device=device,
            tensor_parallel_size=tensor_parallel_size,
            trust_remote_code=trust_remote_code,
            **vllm_kwargs,  # type: ignore[arg-type]
        )
    from compress.engines.hf_engine import HfEngine

    return HfEngine(str(model_dir), dtype=dtype, device=device, trust_remote_code=trust_remote_code)
