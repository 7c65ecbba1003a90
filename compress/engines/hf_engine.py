"""HF transformers engine: the reference, and the fallback for 4-bit folders on CPUs without vLLM's 4-bit kernel.

``apply_chat_template`` + ``generate``, greedy, all prompts in one left-padded batch.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Self

from compress.core.fidelity import TokenLogprobs
from compress.core.provenance import package_versions
from compress.engines.base import BatchResult, Generation, SamplingConfig, ScoreRequest, render_chat, render_chat_ids

SCORE_BATCH = 8
"""Sequences per forward pass when scoring: a batch's logits are batch x length x vocab floats."""


def top_positions(logprobs, request: ScoreRequest, top_k: int) -> list[TokenLogprobs]:
    """A sequence's full log-probabilities (positions x vocab) as what ``score`` returns: per continuation
    token, its own logprob and the top-k."""
    import torch

    targets = torch.tensor(request.continuation, device=logprobs.device)
    picked = logprobs.gather(1, targets[:, None])[:, 0].tolist()
    values, indices = logprobs.topk(top_k, dim=-1)
    return [
        TokenLogprobs(target=t, target_logprob=lp, top=dict(zip(ix, vs, strict=True)))
        for t, lp, ix, vs in zip(request.continuation, picked, indices.tolist(), values.tolist(), strict=True)
    ]


class HfEngine:
    """One HF model, loaded once in ``__init__`` (timed), freed by ``close``."""

    name = "hf"

    def __init__(
        self,
        model_dir: str,
        *,
        dtype: str = "float32",
        device: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

        from compress.folders.exaone3 import hf_load_kwargs

        self.model_dir = str(model_dir)
        self.dtype = dtype
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        started = time.perf_counter()
        # EXAONE 3.x loads as the Llama network it is (renamed on load), not through the folder's remote code.
        exaone3 = hf_load_kwargs(Path(self.model_dir))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model_class = LlamaForCausalLM if exaone3 else AutoModelForCausalLM
        self.model = model_class.from_pretrained(
            self.model_dir,
            dtype=getattr(torch, dtype),
            trust_remote_code=trust_remote_code and not exaone3,
            use_safetensors=True,
            **exaone3,
        ).to(self.device)
        self.model.eval()
        self.load_seconds = time.perf_counter() - started

    def chat(self, prompts: list[str], sampling: SamplingConfig) -> BatchResult:
        rendered = [render_chat(self.tokenizer, p) for p in prompts]
        # The template already holds BOS/special tokens; adding them again would change the prompt.
        return self._generate(prompts, rendered, sampling, add_special_tokens=False)

    def complete(self, prompts: list[str], sampling: SamplingConfig) -> BatchResult:
        return self._generate(prompts, prompts, sampling, add_special_tokens=True)

    def _generate(
        self, prompts: list[str], texts: list[str], sampling: SamplingConfig, *, add_special_tokens: bool
    ) -> BatchResult:
        import torch

        batch = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens
        ).to(self.device)
        kwargs: dict = {
            "max_new_tokens": sampling.max_tokens,
            "min_new_tokens": sampling.min_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling.temperature > 0:
            torch.manual_seed(sampling.seed)
            kwargs.update(do_sample=True, temperature=sampling.temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.ignore_eos:
            kwargs["min_new_tokens"] = sampling.max_tokens
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**batch, **kwargs)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        prompt_len = batch["input_ids"].shape[1]
        eos_ids = _eos_ids(self.model.generation_config, self.tokenizer)
        generations = []
        for i, prompt in enumerate(prompts):
            new = out[i, prompt_len:].tolist()
            n_out = _count_until_eos(new, eos_ids, self.tokenizer.pad_token_id)
            text = self.tokenizer.decode(new[:n_out], skip_special_tokens=True)
            finish = "stop" if n_out < len(new) or (new and new[-1] in eos_ids) else "length"
            n_prompt = int(batch["attention_mask"][i].sum())
            generations.append(
                Generation(
                    prompt=prompt,
                    text=text,
                    prompt_tokens=n_prompt,
                    output_tokens=n_out,
                    finish_reason=finish,
                    prompt_token_ids=tuple(batch["input_ids"][i, prompt_len - n_prompt : prompt_len].tolist()),
                    token_ids=tuple(new[:n_out]),
                )
            )
        return BatchResult(generations=generations, seconds=seconds, metadata={"engine": self.name})

    def chat_token_ids(self, prompts: list[str]) -> list[tuple[int, ...]]:
        return [render_chat_ids(self.tokenizer, p) for p in prompts]

    def encode(self, text: str, *, special: bool = False) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=special))

    def score(self, requests: list[ScoreRequest], top_k: int) -> list[list[TokenLogprobs]]:
        """Right-padded batches (positions start at 0 for every row, so no shift), float32 log-softmax."""

        scored: list[list[TokenLogprobs]] = []
        for start in range(0, len(requests), SCORE_BATCH):
            chunk = requests[start : start + SCORE_BATCH]
            for request, logprobs in zip(chunk, self._batch_logprobs(chunk), strict=True):
                scored.append(top_positions(logprobs, request, top_k))
        return scored

    def full_logprobs(self, request: ScoreRequest):
        """The whole vocabulary's log-probabilities at each continuation position (a float32 tensor,
        positions x vocab): what exact KL needs (compress.evaluation.fidelity.exact_fidelity)."""
        return self._batch_logprobs([request])[0]

    def _batch_logprobs(self, requests: list[ScoreRequest]) -> list:
        import torch

        rows = [[*r.context, *r.continuation] for r in requests]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        out = []
        for i, r in enumerate(requests):
            start, end = len(r.context), len(r.context) + len(r.continuation)
            out.append(torch.log_softmax(logits[i, start - 1 : end - 1], dim=-1))
        return out

    def describe(self) -> dict:
        import torch

        device = torch.cuda.get_device_name(0) if self.device.startswith("cuda") else "cpu"
        return {"engine": self.name, "dtype": self.dtype, "device": device, **package_versions()}

    def close(self) -> None:
        import torch

        self.model = None  # type: ignore[assignment]
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _eos_ids(generation_config: object, tokenizer: object) -> set[int]:
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return set()
    return set(eos) if isinstance(eos, list) else {int(eos)}


def _count_until_eos(tokens: list[int], eos_ids: set[int], pad_id: int | None) -> int:
    """Output tokens up to and including the first EOS, as vLLM counts them; padding after it excluded."""
    for i, tok in enumerate(tokens):
        if tok in eos_ids:
            return i + 1
    n = len(tokens)
    while n and pad_id is not None and tokens[n - 1] == pad_id and pad_id not in eos_ids:
        n -= 1
    return n
