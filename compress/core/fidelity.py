"""Teacher-forced distribution fidelity: how far a compressed variant's next-token distributions drift from the
base's along the same token sequence, the way llama.cpp's ``perplexity --kl-divergence`` reports it (mean, median
and high percentiles of per-token KL pooled over all tokens, plus how often the two greedy choices agree).

Pure functions over per-position log-probabilities an engine already returned: the full vocabulary (exact, from
HF) or the top-k (a lower bound, from vLLM's ``prompt_logprobs``). No engines, no I/O.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Mass below this counts as none: float32 softmax noise over a full vocabulary is of order 1e-7, far above it.
_NO_MASS = 1e-12
_TOP_N = 5  # vLLM's check_logprobs_close accepts a greedy flip when each token is in the other's top-5


@dataclass(frozen=True)
class TokenLogprobs:
    """One position of a teacher-forced sequence under one model: the token the sequence holds there, its
    log-probability, and the model's top-k (token id -> logprob). ``top`` may hold the whole vocabulary."""

    target: int
    target_logprob: float
    top: dict[int, float]

    def known(self) -> dict[int, float]:
        """Every token whose logprob this side knows: its top plus the target (vLLM returns it even outside
        the top-k). Where the top holds the target too, the top's value wins (they are the same number)."""
        return {self.target: self.target_logprob, **self.top}

    @property
    def argmax(self) -> int:
        """The greedy choice as far as this side shows it: highest logprob among the known tokens, ties to the
        lowest id (the target counts: if it beats every top-k entry it was the true argmax)."""
        return min(self.known().items(), key=lambda item: (-item[1], item[0]))[0]

    def top_ids(self, n: int = _TOP_N) -> frozenset[int]:
        """The n highest known tokens (ties to the lowest id): the real top-n when ``top`` holds at least n."""
        ranked = sorted(self.known().items(), key=lambda item: (-item[1], item[0]))
        return frozenset(token for token, _ in ranked[:n])


def _plogp_ratio(p: float, lp: float, lq: float) -> float:
    """One cell's p * (log p - log q), with 0 * anything = 0 and a cell q rules out costing infinity."""
    if p == 0.0:
        return 0.0
    if lq == -math.inf:
        return math.inf
    return p * (lp - lq)


def token_kl(base: TokenLogprobs, variant: TokenLogprobs) -> float:
    """KL(base || variant) in nats at one position. Where both sides' ``top`` cover the vocabulary it is exact.
    With top-k it is computed over a coarse partition: every token whose logprob both sides know (the target,
    and tokens in both tops, or in one top and equal to the other's target) is its own cell, everything else one
    'rest' cell with the leftover mass of each side. KL of a coarse-graining never exceeds the true KL (data
    processing inequality), so a truncated value is a lower bound; the README states how close it came."""
    if base.target != variant.target:
        raise ValueError(
            f"base scores token {base.target} here and the variant token {variant.target}: "
            "the two sides must score the same sequence"
        )
    known_b, known_v = base.known(), variant.known()
    cells = known_b.keys() & known_v.keys()
    terms = [_plogp_ratio(math.exp(known_b[t]), known_b[t], known_v[t]) for t in cells]
    rest_b = max(0.0, 1.0 - math.fsum(math.exp(known_b[t]) for t in cells))
    rest_v = max(0.0, 1.0 - math.fsum(math.exp(known_v[t]) for t in cells))
    if rest_b > _NO_MASS:
        # Flooring the variant's rest only lowers the term: the value stays a lower bound.
        terms.append(rest_b * math.log(rest_b / max(rest_v, _NO_MASS)))
    return max(0.0, math.fsum(terms))


@dataclass(frozen=True)
class Divergence:
    """The first position where the variant's greedy choice differs from the base's (vLLM's check_logprobs_close
    looks there: a near-tie flip is harmless when each side's token is in the other's top-5)."""

    index: int  # position in the response (0 = first response token)
    base_token: int
    variant_token: int
    base_in_variant_top5: bool
    variant_in_base_top5: bool


@dataclass(frozen=True)
class PromptFidelity:
    """One prompt's response scored token by token under both models."""

    prompt_id: str
    kl: tuple[float, ...]  # per response token
    top1_agree: tuple[bool, ...]  # variant argmax == base argmax at that position
    divergence: Divergence | None  # None: the variant's argmax equals the base's everywhere
    truncated: bool  # True when any position was computed from top-k (not full vocabulary)


def score_prompt(
    prompt_id: str,
    base: Sequence[TokenLogprobs],
    variant: Sequence[TokenLogprobs],
    *,
    full_vocab_size: int | None = None,
) -> PromptFidelity:
    """Per-token KL and greedy agreement along one response. Argmaxes are compared, not targets: a min_tokens
    rule can force the sequence's token away from the base's own choice. Without ``full_vocab_size`` nothing can
    prove a top covers the vocabulary, so the result counts as truncated."""
    if len(base) != len(variant):
        raise ValueError(f"prompt {prompt_id!r}: base has {len(base)} scored positions and the variant {len(variant)}")
    kl: list[float] = []
    agree: list[bool] = []
    divergence: Divergence | None = None
    for index, (b, v) in enumerate(zip(base, variant, strict=True)):
        try:
            kl.append(token_kl(b, v))
        except ValueError as exc:
            raise ValueError(f"prompt {prompt_id!r}, position {index}: {exc}") from None
        b_top, v_top = b.argmax, v.argmax
        agree.append(b_top == v_top)
        if divergence is None and b_top != v_top:
            divergence = Divergence(
                index=index,
                base_token=b_top,
                variant_token=v_top,
                base_in_variant_top5=b_top in v.top_ids(),
                variant_in_base_top5=v_top in b.top_ids(),
            )
    exact = full_vocab_size is not None and all(
        len(b.top) == full_vocab_size and len(v.top) == full_vocab_size for b, v in zip(base, variant, strict=True)
    )
    return PromptFidelity(prompt_id, tuple(kl), tuple(agree), divergence, truncated=not exact)


@dataclass(frozen=True)
class FidelitySummary:
    """A variant's fidelity over a prompt set; ``dataclasses.asdict`` of it is JSON-serialisable."""

    n_prompts: int  # prompts with at least one scored token
    n_tokens: int
    mean_kl: float
    mean_kl_se: float  # standard error of mean_kl, clustered by prompt (tokens of one answer are correlated)
    median_kl: float
    p90_kl: float
    p99_kl: float
    max_kl: float
    top1_agreement: float
    top1_agreement_se: float  # clustered by prompt too
    truncated: bool
    worst: tuple[tuple[str, float], ...]  # up to 5 (prompt_id, that prompt's mean kl), highest first


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks, numpy's default method."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    position = q / 100.0 * (len(ordered) - 1)
    lo = math.floor(position)
    hi = min(lo + 1, len(ordered) - 1)
    fraction = position - lo
    if fraction == 0.0 or ordered[lo] == ordered[hi]:
        return ordered[lo]  # also keeps inf - inf out of the arithmetic
    return ordered[lo] + (ordered[hi] - ordered[lo]) * fraction


def clustered_se(sums: Sequence[float], counts: Sequence[int]) -> float:
    """Standard error of the ratio-mean sum(S_i) / sum(n_i) with clusters i (here: prompts), the sandwich
    estimator with the small-sample factor P/(P-1). Token-level SE would be too small: the tokens of one answer
    drift together. 0.0 with fewer than two clusters; infinite when the mean is."""
    if len(sums) != len(counts):
        raise ValueError("one count per sum")
    clusters = len(sums)
    total = sum(counts)
    if clusters < 2 or total == 0:
        return 0.0
    mean = math.fsum(sums) / total
    if not math.isfinite(mean):
        return math.inf
    spread = math.fsum((s - mean * n) ** 2 for s, n in zip(sums, counts, strict=True))
    return math.sqrt(clusters / (clusters - 1) * spread) / total


def summarize(prompts: Sequence[PromptFidelity]) -> FidelitySummary:
    """Pool every token of every prompt (as llama.cpp does) for the mean and percentiles; SEs are clustered by
    prompt. Prompts with no scored tokens are left out everywhere, n_prompts included."""
    scored = [p for p in prompts if p.kl]
    if not scored:
        raise ValueError("no tokens to score")
    pooled = [k for p in scored for k in p.kl]
    counts = [len(p.kl) for p in scored]
    kl_sums = [math.fsum(p.kl) for p in scored]
    agree_sums = [float(sum(p.top1_agree)) for p in scored]
    n_tokens = len(pooled)
    per_prompt = [(p.prompt_id, s / n) for p, s, n in zip(scored, kl_sums, counts, strict=True)]
    worst = sorted(per_prompt, key=lambda item: -item[1])[:5]  # stable: ties keep input order
    return FidelitySummary(
        n_prompts=len(scored),
        n_tokens=n_tokens,
        mean_kl=math.fsum(kl_sums) / n_tokens,
        mean_kl_se=clustered_se(kl_sums, counts),
        median_kl=percentile(pooled, 50),
        p90_kl=percentile(pooled, 90),
        p99_kl=percentile(pooled, 99),
        max_kl=max(pooled),
        top1_agreement=math.fsum(agree_sums) / n_tokens,
        top1_agreement_se=clustered_se(agree_sums, counts),
        truncated=any(p.truncated for p in scored),
        worst=tuple(worst),
    )


def bootstrap_percentile_se(
    prompts: Sequence[PromptFidelity], q: float = 99.0, *, replicates: int = 200, seed: int = 0
) -> float:
    """Standard error of the pooled q-th percentile of per-token KL, by resampling whole prompts with
    replacement (a cluster bootstrap, for the reason :func:`clustered_se` clusters: the tokens of one answer
    move together). A percentile has no closed-form SE; this is what calibration widens ``max_p99_kl`` by.
    Seeded, so the same prompts always give the same figure. 0.0 with fewer than two scored prompts; infinite
    when a KL is."""
    scored = [p.kl for p in prompts if p.kl]
    if len(scored) < 2 or replicates < 2:
        return 0.0
    if not all(math.isfinite(k) for kl in scored for k in kl):
        return math.inf
    rng = random.Random(seed)
    values = []
    for _ in range(replicates):
        pooled = [k for _ in scored for k in scored[rng.randrange(len(scored))]]
        values.append(percentile(pooled, q))
    return statistics.stdev(values)
