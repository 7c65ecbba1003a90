"""vLLM engine: ``LLM.chat()`` over all prompts in one batched call, greedy, min/max tokens.

Defaults differ from ``LLM``'s for reproducibility (as vLLM's own test runner does): ``seed=0``,
``max_model_len=1024``, float32 (greedy float32 text matched across vLLM/HF and CPU/GPU here; bf16 did not),
eager mode on the CPU (no compile step to pay for per model).
"""

from __future__ import annotations

import gc
import time
from typing import Any, Self

from compress.core.fidelity import TokenLogprobs
from compress.core.provenance import package_versions
from compress.engines.base import BatchResult, Generation, SamplingConfig, ScoreRequest, render_chat_ids

MAX_LOGPROBS = 20
"""vLLM's default cap on returned logprobs; teacher-forced fidelity reads the top-20 (README: its truncation error)."""


class VllmEngine:
    """One vLLM ``LLM`` object, created once in ``__init__`` (timed) and shut down by ``close``."""

    name = "vllm"

    def __init__(
        self,
        model_dir: str,
        *,
        dtype: str = "float32",
        device: str | None = None,
        **options: Any,
    ) -> None:
        """``options`` are :func:`llm_kwargs`' (tensor_parallel_size, max_model_len, gpu_memory_utilization,
        enforce_eager, trust_remote_code, load_format, kv_cache_memory_bytes)."""
        import torch
        from vllm import LLM

        self.model_dir = str(model_dir)
        self.dtype = dtype
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.eager = bool(options.get("enforce_eager")) and self.device != "cpu"
        """Eager on CUDA: other kernels than the compiled engine's, so other near-tie text (the CPU is always eager)."""
        kwargs = llm_kwargs(self.model_dir, dtype=dtype, cuda=self.device != "cpu", **options)
        kwargs.setdefault("max_logprobs", MAX_LOGPROBS)
        register_config_classes(self.model_dir)
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

    def chat_token_ids(self, prompts: list[str]) -> list[tuple[int, ...]]:
        return [render_chat_ids(self.llm.get_tokenizer(), p) for p in prompts]

    def encode(self, text: str, *, special: bool = False) -> tuple[int, ...]:
        return tuple(self.llm.get_tokenizer().encode(text, add_special_tokens=special))

    def score(self, requests: list[ScoreRequest], top_k: int) -> list[list[TokenLogprobs]]:
        """Through ``prompt_logprobs``: vLLM returns, at every prompt position, the top-k and the actual token's
        logprob, computed from the raw logits (before any sampling processor)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if top_k > MAX_LOGPROBS:
            raise ValueError(f"top_k {top_k} exceeds the engine's max_logprobs {MAX_LOGPROBS}")
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=top_k, detokenize=False)
        prompts = [TokensPrompt(prompt_token_ids=[*r.context, *r.continuation]) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        scored = []
        for request, out in zip(requests, outputs, strict=True):
            ids = [*request.context, *request.continuation]
            positions = []
            for j in range(len(request.context), len(ids)):
                dist = out.prompt_logprobs[j]
                top = {tid: float(lp.logprob) for tid, lp in dist.items() if lp.rank is not None and lp.rank <= top_k}
                positions.append(TokenLogprobs(target=ids[j], target_logprob=float(dist[ids[j]].logprob), top=top))
            scored.append(positions)
        return scored

    def _result(self, prompts: list[str], outputs: list, seconds: float) -> BatchResult:
        generations = [
            Generation(
                prompt=prompt,
                text=out.outputs[0].text,
                prompt_tokens=len(out.prompt_token_ids or []),
                output_tokens=len(out.outputs[0].token_ids),
                finish_reason=out.outputs[0].finish_reason,
                prompt_token_ids=tuple(out.prompt_token_ids or ()),
                token_ids=tuple(out.outputs[0].token_ids),
            )
            for prompt, out in zip(prompts, outputs, strict=True)
        ]
        return BatchResult(generations=generations, seconds=seconds, metadata={"engine": self.name})

    def describe(self) -> dict:
        import torch

        device = torch.cuda.get_device_name(0) if self.device.startswith("cuda") else "cpu"
        eager = {"enforce_eager": True} if self.eager else {}
        return {"engine": self.name, "dtype": self.dtype, "device": device, **eager, **package_versions()}

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


def llm_kwargs(
    model_dir: str,
    *,
    dtype: str,
    cuda: bool,
    tensor_parallel_size: int = 1,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    enforce_eager: bool | None = None,
    trust_remote_code: bool = False,
    load_format: str = "safetensors",
    kv_cache_memory_bytes: int | None = None,
) -> dict:
    """The ``LLM(...)`` keywords the gate's engine passes: one place, so the bare overhead script
    (compress/bench/bare_gate.py) loads exactly what the gate loads. Eager on the CPU, compiled on CUDA."""
    kwargs: dict = {
        "model": str(model_dir),
        "dtype": dtype,
        "seed": 0,
        "max_model_len": max_model_len or _default_max_model_len(str(model_dir)),
        "tensor_parallel_size": tensor_parallel_size,
        "trust_remote_code": trust_remote_code,
        "load_format": load_format,
        "enforce_eager": (not cuda) if enforce_eager is None else enforce_eager,
    }
    if gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    if kv_cache_memory_bytes is not None:  # a fixed KV cache: vLLM then skips its GPU memory profiling
        kwargs["kv_cache_memory_bytes"] = kv_cache_memory_bytes
    return kwargs


def register_config_classes(model_dir: str) -> None:
    """EXAONE 3.x: vLLM has the model (``ExaoneForCausalLM``) but not its config class, which would come from
    the folder's remote code; register this project's (:mod:`compress.folders.exaone3_config`)."""
    from compress.folders.exaone3 import register_config

    register_config(model_dir)


def _default_max_model_len(model_dir: str) -> int:
    """1024 tokens bound the KV cache for short chat prompts, but never above what the model supports."""
    from compress.folders.checks import read_config

    config = read_config(model_dir)
    limit = config.get("max_position_embeddings") or 1024
    return min(1024, int(limit))
