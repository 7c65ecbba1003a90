"""The EXAONE 3 -> Llama conversion is exact where it matters: the scores the engines give.

vLLM has its own EXAONE 3 model (``ExaoneForCausalLM``, models/exaone.py: ``transformer.h``, fused qkv and
gate/up), independent of this project's renaming. The tiny EXAONE-3 fixture is scored by it, teacher-forced
on its own greedy answers to the gate's prompts (float32, top-20 logprobs at every answer position), and
compared with the same sequences scored on the converted folder by vLLM's Llama model and by HF's
``LlamaForCausalLM``, and on the folder converted back to EXAONE 3. The greedy texts must be equal too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.core.prompts import load_prompts
from compress.engines import SamplingConfig, open_engine
from compress.engines.base import ScoreRequest
from compress.folders import exaone3
from compress.local_models.registry import local_model

SAMPLING = SamplingConfig(temperature=0.0, min_tokens=8, max_tokens=32)
TOP_K = 20
# Measured 2026-12-01 (209 answer tokens x top-20): vLLM's ExaoneForCausalLM on the original and its
# LlamaForCausalLM on the converted folder gave identical logprobs (0.0), and the same on the folder converted
# back; HF's LlamaForCausalLM differed from vLLM by float32 rounding of other kernels (max 5.3e-6 nats).
SAME_ENGINE_TOL = 1e-6
OTHER_ENGINE_TOL = 1e-4


def _score(folder: Path, engine: str, requests: list[ScoreRequest] | None, prompts: list[str]):
    with open_engine(folder, engine=engine, dtype="float32") as eng:
        texts = eng.chat(prompts, SAMPLING)
        if requests is None:
            requests = [ScoreRequest(context=g.prompt_token_ids, continuation=g.token_ids) for g in texts.generations]
        return texts.texts, requests, eng.score(requests, TOP_K)


def _max_diff(a, b) -> float:
    """Largest |logprob difference| over every answer position: the actual token and every top-k entry
    both sides returned."""
    worst = 0.0
    for seq_a, seq_b in zip(a, b, strict=True):
        for pos_a, pos_b in zip(seq_a, seq_b, strict=True):
            worst = max(worst, abs(pos_a.target_logprob - pos_b.target_logprob))
            for token in pos_a.top.keys() & pos_b.top.keys():
                worst = max(worst, abs(pos_a.top[token] - pos_b.top[token]))
    return worst


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict:
    original = local_model("tiny-exaone3")
    work = tmp_path_factory.mktemp("exaone3")
    llama, back = work / "llama", work / "back"
    llama.mkdir()
    back.mkdir()
    exaone3.convert_folder(original, llama, to="llama")
    exaone3.convert_folder(llama, back, to="exaone3")
    prompts = [p.text for p in load_prompts()]
    texts, requests, reference = _score(original, "vllm", None, prompts)
    out = {"reference": (texts, reference), "tokens": sum(len(r.continuation) for r in requests)}
    for name, folder, engine in (("vllm-llama", llama, "vllm"), ("hf-llama", llama, "hf"), ("vllm-back", back, "vllm")):
        t, _, s = _score(folder, engine, requests, prompts)
        out[name] = (t, s)
    return out


@pytest.mark.parametrize(
    ("name", "tol"), [("vllm-llama", SAME_ENGINE_TOL), ("hf-llama", OTHER_ENGINE_TOL), ("vllm-back", SAME_ENGINE_TOL)]
)
def test_converted_folder_scores_as_the_original(scored: dict, name: str, tol: float) -> None:
    ref_texts, ref_scores = scored["reference"]
    texts, scores = scored[name]
    diff = _max_diff(ref_scores, scores)
    print(
        f"\nvLLM ExaoneForCausalLM (original) vs {name}: max |logprob diff| {diff:.2e} over "
        f"{scored['tokens']} answer tokens x top-{TOP_K}; greedy texts equal on "
        f"{sum(a == b for a, b in zip(ref_texts, texts, strict=True))}/{len(texts)} prompts"
    )
    assert diff <= tol
    assert texts == ref_texts
