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
SHARED_GROUPS = 8
"""Contexts per forward pass when consecutive requests share one (multiple choice: 4 choices each)."""


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


def context_groups(requests: list[ScoreRequest]) -> list[list[int]]:
    """Indices of consecutive requests that share one (non-empty) context and each add a continuation to
    it; every other request is a group of its own."""
    groups: list[list[int]] = []
    for i, request in enumerate(requests):
        last = requests[groups[-1][-1]] if groups else None
        shares = last is not None and last.context == request.context and bool(last.continuation)
        if shares and request.context and request.continuation:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


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
        """Right-padded batches (positions start at 0 for every row, so no shift), float32 log-softmax.
        Consecutive requests with the same context (a multiple-choice item's choices) compute it once
        (:meth:`_shared_logprobs`); the rest are scored whole."""
        scored: dict[int, list[TokenLogprobs]] = {}
        groups = context_groups(requests)
        singles = [g[0] for g in groups if len(g) == 1]
        for start in range(0, len(singles), SCORE_BATCH):
            chunk = singles[start : start + SCORE_BATCH]
            for i, logprobs in zip(chunk, self._batch_logprobs([requests[i] for i in chunk]), strict=True):
                scored[i] = top_positions(logprobs, requests[i], top_k)
        shared = [g for g in groups if len(g) > 1]
        for start in range(0, len(shared), SHARED_GROUPS):
            chunk = shared[start : start + SHARED_GROUPS]
            flat = [i for g in chunk for i in g]
            for i, logprobs in zip(flat, self._shared_logprobs([[requests[i] for i in g] for g in chunk]), strict=True):
                scored[i] = top_positions(logprobs, requests[i], top_k)
        return [scored[i] for i in range(len(requests))]

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

    def _shared_logprobs(self, groups: list[list[ScoreRequest]]) -> list:
        """Each group's context once, then all its continuations on a copy of its KV cache: the same
        log-probabilities as scoring every sequence whole (float32: within 1e-5 here, README), at a third
        of the positions for four-choice items. Contexts are left-padded, so each one's last position is
        the batch's last (only that row's logits are computed); positions are given explicitly."""
        import torch

        contexts = [g[0].context for g in groups]
        width = max(len(c) for c in contexts)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(c)) + list(c) for c in contexts], device=self.device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            head = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                              logits_to_keep=1)  # fmt: skip
            first = torch.log_softmax(head.logits[:, -1].float(), dim=-1)  # predicts each continuation's 1st token
            rows = [(gi, r) for gi, g in enumerate(groups) for r in g]
            cache = head.past_key_values
            cache.batch_select_indices(torch.tensor([gi for gi, _ in rows], device=self.device))
            conts = [list(r.continuation) for _, r in rows]
            cwidth = max(len(c) for c in conts)
            cont_ids = torch.tensor([c + [pad] * (cwidth - len(c)) for c in conts], device=self.device)
            cont_mask = torch.tensor([[1] * len(c) + [0] * (cwidth - len(c)) for c in conts], device=self.device)
            start = torch.tensor([len(contexts[gi]) for gi, _ in rows], device=self.device)
            cont_positions = start[:, None] + torch.arange(cwidth, device=self.device)[None, :]
            full_mask = torch.cat([mask[[gi for gi, _ in rows]], cont_mask], dim=1)
            logits = self.model(input_ids=cont_ids, attention_mask=full_mask, position_ids=cont_positions,
                                past_key_values=cache, use_cache=False).logits.float()  # fmt: skip
        out = []
        for k, (gi, r) in enumerate(rows):
            rest = torch.log_softmax(logits[k, : len(r.continuation) - 1], dim=-1)
            out.append(torch.cat([first[gi : gi + 1], rest], dim=0))
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
