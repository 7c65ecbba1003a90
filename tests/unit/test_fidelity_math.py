"""Teacher-forced fidelity math (compress.core.fidelity): KL per token, exact and truncated, the first greedy
divergence, and the pooled summary with prompt-clustered standard errors. Expected values are worked out by hand."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compress.core.fidelity import (
    Divergence,
    PromptFidelity,
    TokenLogprobs,
    clustered_se,
    percentile,
    score_prompt,
    summarize,
    token_kl,
)


def full(probs: list[float], target: int = 0) -> TokenLogprobs:
    """A position with the whole vocabulary in ``top``."""
    return TokenLogprobs(target, math.log(probs[target]), {i: math.log(p) for i, p in enumerate(probs)})


def topk(probs: list[float], ids: set[int], target: int = 0) -> TokenLogprobs:
    """A position showing only ``ids`` of the vocabulary (plus the target's logprob, as vLLM returns it)."""
    return TokenLogprobs(target, math.log(probs[target]), {i: math.log(probs[i]) for i in ids})


# --- token_kl ---------------------------------------------------------------------------------------------------


def test_full_vocabulary_kl_matches_the_hand_computation() -> None:
    p, q = [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]
    expected = 0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.4) + 0.2 * math.log(0.2 / 0.2)
    assert expected == pytest.approx(0.0252671538, abs=1e-9)
    assert token_kl(full(p), full(q)) == pytest.approx(expected, rel=1e-12)


def test_kl_is_directional() -> None:
    p, q = [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]
    reverse = 0.4 * math.log(0.4 / 0.5) + 0.4 * math.log(0.4 / 0.3)
    assert token_kl(full(q), full(p)) == pytest.approx(reverse, rel=1e-12)
    assert reverse != pytest.approx(token_kl(full(p), full(q)))


@pytest.mark.parametrize("ids", [{0, 1, 2, 3}, {0, 2}, set()])
def test_identical_distributions_have_zero_kl(ids: set[int]) -> None:
    probs = [0.1, 0.2, 0.3, 0.4]
    assert token_kl(topk(probs, ids, target=1), topk(probs, ids, target=1)) == 0.0


def test_truncated_kl_uses_shared_cells_and_one_rest_cell() -> None:
    p, q = [0.5, 0.3, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]
    # Base shows {0, 1}, the variant {0, 2}: only token 0 is known to both, everything else is one cell.
    expected = 0.5 * math.log(0.5 / 0.4) + 0.5 * math.log(0.5 / 0.6)
    assert token_kl(topk(p, {0, 1}), topk(q, {0, 2})) == pytest.approx(expected, rel=1e-12)


def test_the_target_is_a_known_cell_even_outside_both_tops() -> None:
    p, q = [0.5, 0.3, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]
    # Target 3 is in neither top; tokens 0 and 1 are in both: cells {0, 1, 3}, rest = {2}.
    expected = (
        0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.3) + 0.1 * math.log(0.1 / 0.1) + 0.1 * math.log(0.1 / 0.2)
    )
    assert token_kl(topk(p, {0, 1}, target=3), topk(q, {0, 1}, target=3)) == pytest.approx(expected, rel=1e-12)


def test_a_token_in_one_top_and_the_other_sides_target_is_its_own_cell() -> None:
    p, q = [0.5, 0.3, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]
    # Target 2: in the variant's top via its target, in the base's top explicitly. Cells {0, 2}; rest {1, 3}.
    base, variant = topk(p, {0, 2}, target=2), topk(q, {0}, target=2)
    expected = 0.5 * math.log(0.5 / 0.4) + 0.1 * math.log(0.1 / 0.2) + 0.4 * math.log(0.4 / 0.4)
    assert token_kl(base, variant) == pytest.approx(expected, rel=1e-12)


def test_the_variant_ruling_out_a_base_token_costs_infinity() -> None:
    base = TokenLogprobs(0, math.log(0.5), {0: math.log(0.5), 1: math.log(0.5)})
    variant = TokenLogprobs(0, 0.0, {0: 0.0, 1: -math.inf})
    assert token_kl(base, variant) == math.inf
    assert token_kl(variant, base) == pytest.approx(math.log(2.0))  # 0 * log(0 / q) contributes nothing


def test_different_targets_are_refused() -> None:
    probs = [0.5, 0.5]
    with pytest.raises(ValueError, match="same sequence"):
        token_kl(full(probs, target=0), full(probs, target=1))


def _softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]
    total = sum(weights)
    return [w / total for w in weights]


@st.composite
def _pair(draw: st.DrawFn) -> tuple[list[float], list[float], set[int], set[int], int]:
    size = draw(st.integers(min_value=2, max_value=8))
    logits = st.lists(st.floats(min_value=-8, max_value=8), min_size=size, max_size=size)
    p, q = _softmax(draw(logits)), _softmax(draw(logits))
    ids = st.sets(st.integers(min_value=0, max_value=size - 1), max_size=size)
    return p, q, draw(ids), draw(ids), draw(st.integers(min_value=0, max_value=size - 1))


def _exact_kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


@settings(max_examples=120, deadline=None)
@given(_pair())
def test_truncated_kl_never_exceeds_the_exact_kl(
    case: tuple[list[float], list[float], set[int], set[int], int],
) -> None:
    p, q, base_ids, variant_ids, target = case
    truncated = token_kl(topk(p, base_ids, target), topk(q, variant_ids, target))
    assert 0.0 <= truncated <= _exact_kl(p, q) + 1e-9


@settings(max_examples=120, deadline=None)
@given(_pair())
def test_kl_over_the_whole_vocabulary_is_exact(case: tuple[list[float], list[float], set[int], set[int], int]) -> None:
    p, q, _, _, target = case
    assert token_kl(full(p, target), full(q, target)) == pytest.approx(_exact_kl(p, q), rel=1e-9, abs=1e-12)


# --- argmax, divergence, score_prompt ---------------------------------------------------------------------------


def test_argmax_breaks_ties_to_the_lowest_id_and_counts_the_target() -> None:
    assert TokenLogprobs(9, -5.0, {7: -0.5, 3: -0.5, 4: -1.0}).argmax == 3
    assert TokenLogprobs(2, -0.1, {5: -3.0, 6: -4.0}).argmax == 2  # the target beats everything shown


def _position(order: list[int], target: int = 0) -> TokenLogprobs:
    """A position whose top ranks ``order`` first to last (logprobs -1, -2, ...)."""
    top = {token: -float(rank + 1) for rank, token in enumerate(order)}
    return TokenLogprobs(target, top.get(target, -50.0), top)


def test_first_divergence_is_found_with_its_top5_flags() -> None:
    base = [
        _position([1, 2, 3, 4, 5, 6]),
        _position([2, 1, 3, 4, 5, 6]),
        _position([3, 10, 11, 12, 13, 8]),  # base picks 3; the variant's 8 is 6th here
        _position([4, 1, 2, 3, 5, 6]),
    ]
    variant = [
        _position([1, 3, 2, 4, 5, 6]),
        _position([2, 3, 1, 4, 5, 6]),
        _position([8, 20, 21, 3, 22, 23]),  # variant picks 8; the base's 3 is 4th here
        _position([5, 4, 1, 2, 3, 6]),  # a second divergence: not the first
    ]
    scored = score_prompt("p1", base, variant)
    assert scored.top1_agree == (True, True, False, False)
    assert scored.divergence == Divergence(
        index=2, base_token=3, variant_token=8, base_in_variant_top5=True, variant_in_base_top5=False
    )


def test_argmax_is_compared_not_the_forced_target() -> None:
    # The sequence holds token 9 (forced, e.g. by min_tokens) while both models prefer token 1: no divergence.
    base = [TokenLogprobs(9, -6.0, {1: -0.1, 2: -2.5})]
    variant = [TokenLogprobs(9, -5.0, {1: -0.2, 2: -2.0})]
    scored = score_prompt("forced", base, variant)
    assert scored.divergence is None
    assert scored.top1_agree == (True,)


def test_score_prompt_gives_per_token_kl_in_order() -> None:
    p, q = [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]
    scored = score_prompt("p", [full(p), full(p)], [full(p), full(q)], full_vocab_size=3)
    assert scored.prompt_id == "p"
    assert scored.kl[0] == 0.0
    assert scored.kl[1] == pytest.approx(0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.4))
    assert scored.truncated is False
    assert scored.divergence is None


def test_truncated_unless_every_top_covers_the_stated_vocabulary() -> None:
    p = [0.5, 0.3, 0.2]
    assert score_prompt("p", [full(p)], [full(p)]).truncated is True  # nothing says 3 is the vocabulary
    assert score_prompt("p", [full(p)], [full(p)], full_vocab_size=4).truncated is True
    mixed = score_prompt("p", [full(p), full(p)], [full(p), topk(p, {0, 1})], full_vocab_size=3)
    assert mixed.truncated is True


def test_score_prompt_refuses_different_lengths_and_names_the_prompt() -> None:
    p = [0.5, 0.5]
    with pytest.raises(ValueError, match="'q7'"):
        score_prompt("q7", [full(p), full(p)], [full(p)])
    with pytest.raises(ValueError, match=r"'q8', position 1: .*same sequence"):
        score_prompt("q8", [full(p), full(p, 0)], [full(p), full(p, 1)])


# --- percentiles, clustered SE, summarize -----------------------------------------------------------------------


def test_percentile_interpolates_linearly_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 90) == pytest.approx(3.7)  # rank 2.7: 3 + 0.7 * (4 - 3)
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 99) == 7.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=2, max_size=30))
def test_percentile_agrees_with_an_independent_implementation(values: list[float]) -> None:
    # statistics.quantiles(method="inclusive") is the same linear rule (R type 7, numpy's default), written apart.
    reference = statistics.quantiles(values, n=100, method="inclusive")
    for q in range(1, 100):
        assert percentile(values, q) == pytest.approx(reference[q - 1], rel=1e-9, abs=1e-6)
    ordered = sorted(values)  # brute force for the ends and the middle
    assert percentile(values, 0) == ordered[0] and percentile(values, 100) == ordered[-1]
    if len(values) % 2 == 1:
        assert percentile(values, 50) == ordered[len(values) // 2]


def _prompt(prompt_id: str, kl: tuple[float, ...], agree: tuple[bool, ...], truncated: bool = False) -> PromptFidelity:
    return PromptFidelity(prompt_id, kl, agree, None, truncated)


def test_summary_against_a_hand_computation() -> None:
    prompts = [
        _prompt("a", (0.1, 0.5), (True, False)),
        _prompt("b", (0.2,), (True,), truncated=True),
        _prompt("empty", (), ()),
    ]
    summary = summarize(prompts)
    assert summary.n_prompts == 2
    assert summary.n_tokens == 3
    assert summary.mean_kl == pytest.approx(0.8 / 3)
    # Clustered SE: S = (0.6, 0.2), n = (2, 1), m = 0.8/3; sqrt(2/1 * sum (S - m n)^2) / 3 = 2/45.
    m = 0.8 / 3
    hand = math.sqrt(2 / 1 * ((0.6 - 2 * m) ** 2 + (0.2 - 1 * m) ** 2)) / 3
    assert hand == pytest.approx(2 / 45)
    assert summary.mean_kl_se == pytest.approx(hand)
    assert summary.median_kl == pytest.approx(0.2)
    assert summary.p90_kl == pytest.approx(0.2 + 0.8 * (0.5 - 0.2))
    assert summary.p99_kl == pytest.approx(0.2 + 0.98 * (0.5 - 0.2))
    assert summary.max_kl == 0.5
    # Agreement: S = (1, 1), n = (2, 1), m = 2/3: sqrt(2 * ((1 - 4/3)^2 + (1 - 2/3)^2)) / 3 = 2/9.
    assert summary.top1_agreement == pytest.approx(2 / 3)
    assert summary.top1_agreement_se == pytest.approx(2 / 9)
    assert summary.truncated is True
    assert summary.worst == (("a", pytest.approx(0.3)), ("b", pytest.approx(0.2)))
    json.dumps(asdict(summary))  # the report writes it as JSON


def test_worst_keeps_the_five_highest_prompt_means() -> None:
    prompts = [_prompt(f"p{i}", (i / 10, i / 10), (True, True)) for i in (3, 0, 6, 1, 5, 2, 4)]
    assert [pid for pid, _ in summarize(prompts).worst] == ["p6", "p5", "p4", "p3", "p2"]


def test_clustered_se_of_one_prompt_is_zero_and_equal_prompts_have_none() -> None:
    assert clustered_se([3.0], [4]) == 0.0
    assert summarize([_prompt("only", (0.1, 0.9, 0.4), (True, False, True))]).mean_kl_se == 0.0
    assert clustered_se([1.0, 2.0, 3.0], [1, 2, 3]) == pytest.approx(0.0, abs=1e-15)  # every prompt's mean is 1


def test_clustered_se_differs_from_the_naive_token_se() -> None:
    # Two prompts, each internally constant: tokens are perfectly correlated within a prompt.
    sums, counts = [0.0 * 10, 1.0 * 10], [10, 10]
    pooled = [0.0] * 10 + [1.0] * 10
    naive = math.sqrt(sum((x - 0.5) ** 2 for x in pooled) / 19) / math.sqrt(20)
    clustered = math.sqrt(2 / 1 * ((0 - 5) ** 2 + (10 - 5) ** 2)) / 20
    assert clustered_se(sums, counts) == pytest.approx(clustered)
    assert clustered_se(sums, counts) > 3 * naive


def test_nothing_to_summarize_is_refused() -> None:
    with pytest.raises(ValueError, match="no tokens to score"):
        summarize([])
    with pytest.raises(ValueError, match="no tokens to score"):
        summarize([_prompt("empty", (), ())])
