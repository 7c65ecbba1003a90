"""vLLM engine: ``LLM.chat()`` over all prompts in one batched call, greedy, min/max tokens.

Defaults differ from ``LLM``'s for reproducibility (as vLLM's own test runner does): ``seed=0``,
``max_model_len=1024``, float32 (greedy float32 text matched across vLLM/HF and CPU/GPU here; bf16 did not),
eager mode on the CPU (no compile step to pay for per model).
"""

from __future__ import annotations

import gc
import time
from typing import Self

from compress.engines.base import BatchResult, Generation, SamplingConfig
from compress.engines.versions import package_versions


class VllmEngine:
    """One vLLM ``LLM`` object, created once in ``__init__`` (timed) and shut down by ``close``."""

    name = "vllm"

    def __init__(
        self,
        model_dir: str,
        *,
        dtype: str = "float32",
        device: str | None = None,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        enforce_eager: bool | None = None,
        trust_remote_code: bool = False,
        load_format: str = "safetensors",
    ) -> None:
        import torch
        from vllm import LLM

        self.model_dir = str(model_dir)
        self.dtype = dtype
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict = {
            "model": self.model_dir,
            "dtype": dtype,
            "seed": 0,
            "max_model_len": max_model_len or _default_max_model_len(self.model_dir),
            "tensor_parallel_size": tensor_parallel_size,
            "trust_remote_code": trust_remote_code,
            "load_format": load_format,
            "enforce_eager": (self.device == "cpu") if enforce_eager is None else enforce_eager,
        }
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        started = time.perf_counter()
        self.llm = LLM(**kwargs)
        self.load_seconds = time.perf_counter() - started

    def chat(self, prompts: list[str], sampling: SamplingConfig) -> BatchResult:
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        started = time.perf_counter()
        outputs = self.llm.chat(conversations, self._params(sampling), use_tqdm=False)
        seconds = time.perf_counter() - started
        return self._result(prompts, outputs, seconds)

    def complete(self, prompts: list[str], sampling: SamplingConfig) -> BatchResult:
        started = time.perf_counter()
        outputs = self.llm.generate(prompts, self._params(sampling), use_tqdm=False)
        seconds = time.perf_counter() - started
        return self._result(prompts, outputs, seconds)

    @staticmethod
    def _params(sampling: SamplingConfig):
        from vllm import SamplingParams

        return SamplingParams(
            temperature=sampling.temperature,
            min_tokens=sampling.min_tokens,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
            ignore_eos=sampling.ignore_eos,
        )

    def _result(self, prompts: list[str], outputs: list, seconds: float) -> BatchResult:
        generations = [
            Generation(
                prompt=prompt,
                text=out.outputs[0].text,
                prompt_tokens=len(out.prompt_token_ids or []),
                output_tokens=len(out.outputs[0].token_ids),
                finish_reason=out.outputs[0].finish_reason,
            )
            for prompt, out in zip(prompts, outputs, strict=True)
        ]
        return BatchResult(generations=generations, seconds=seconds, metadata={"engine": self.name})

    def describe(self) -> dict:
        import torch

        device = torch.cuda.get_device_name(0) if self.device.startswith("cuda") else "cpu"
        return {"engine": self.name, "dtype": self.dtype, "device": device, **package_versions()}

    def close(self) -> None:
        """Free the engine so the next model can load in this process (vLLM's own test runner does this)."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None  # type: ignore[assignment]
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm, engine
        gc.collect()
        try:
            from vllm.distributed import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
        except ImportError:  # pragma: no cover - older vLLM layouts
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _default_max_model_len(model_dir: str) -> int:
    """1024 tokens bound the KV cache for short chat prompts, but never above what the model supports."""
    from compress.models.checks import read_config

    config = read_config(model_dir)
    limit = config.get("max_position_embeddings") or 1024
    return min(1024, int(limit))
