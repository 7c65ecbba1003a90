"""Metrics and timing math: hand-checked examples, and properties that must hold for any text or timing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compress.core.similarity import compare_outputs, is_non_empty, similarity
from compress.engines.base import BatchResult, Generation, SamplingConfig
from compress.evaluation.timing import Timing, measure, speedup, token_speedup

# --- similarity: rapidfuzz's normalised Indel similarity, 1 - (insertions + deletions) / (len(a) + len(b))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # identical texts
        ("Hello! How can I assist you today?", "Hello! How can I assist you today?", 1.0),
        # nothing in common
        ("abc", "xyz", 0.0),
        # one substitution = 1 deletion + 1 insertion: 1 - 2/6
        ("abc", "abd", 4 / 6),
        # LCS("kitten", "sitting") = "ittn" (4): indel = 6 + 7 - 2*4 = 5, so 1 - 5/13
        ("kitten", "sitting", 8 / 13),
        # Korean, character level: LCS 2, indel = 2 + 5 - 4 = 3, so 1 - 3/7
        ("서울", "서울입니다", 4 / 7),
        # an empty answer against a real one shares nothing
        ("", "Paris", 0.0),
        # two empty texts are identical
        ("", "", 1.0),
    ],
)
def test_similarity_hand_checked(a: str, b: str, expected: float) -> None:
    assert similarity(a, b) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"), [("Paris", True), (" x ", True), ("", False), ("   ", False), ("\n\t \n", False)]
)
def test_is_non_empty(text: str, expected: bool) -> None:
    assert is_non_empty(text) is expected


def test_compare_outputs_hand_checked() -> None:
    cmp = compare_outputs(["a", "b", "c", "d"], ["a", "x", "  ", "d"])
    assert cmp.similarities == [1.0, 0.0, 0.0, 1.0]
    assert cmp.exact == [True, False, False, True]
    assert cmp.avg_similarity == pytest.approx(0.5)
    assert cmp.exact_match == pytest.approx(0.5)
    assert cmp.non_empty_count == 3
    assert cmp.non_empty_rate == pytest.approx(0.75)


def test_compare_outputs_refuses_different_prompt_counts() -> None:
    with pytest.raises(ValueError, match="prompts differ"):
        compare_outputs(["a", "b"], ["a"])


texts = st.text(max_size=80)


@given(texts, texts)
def test_similarity_in_unit_interval(a: str, b: str) -> None:
    assert 0.0 <= similarity(a, b) <= 1.0


@given(texts)
def test_similarity_of_identical_texts_is_one(a: str) -> None:
    assert similarity(a, a) == 1.0


@given(texts, texts)
def test_similarity_is_symmetric(a: str, b: str) -> None:
    assert similarity(a, b) == pytest.approx(similarity(b, a))


@given(texts, texts)
def test_similarity_one_only_for_identical_texts(a: str, b: str) -> None:
    assert (similarity(a, b) == 1.0) == (a == b)


@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=12))
def test_compare_outputs_properties(pairs: list[tuple[str, str]]) -> None:
    base, cand = [p[0] for p in pairs], [p[1] for p in pairs]
    cmp = compare_outputs(base, cand)
    assert 0.0 <= cmp.avg_similarity <= 1.0
    assert 0.0 <= cmp.exact_match <= 1.0
    assert (cmp.exact_match == 1.0) == (base == cand)
    assert cmp.non_empty_count == sum(1 for c in cand if c.strip())
    assert cmp.non_empty_rate == pytest.approx(cmp.non_empty_count / len(cand))
    assert compare_outputs(base, base).avg_similarity == 1.0


# --- timing: median, best, spread, tokens/s and the two speedups


def test_timing_hand_checked() -> None:
    t = Timing(runs=[2.0, 1.0, 4.0], output_tokens=100)
    assert t.median == 2.0
    assert t.best == 1.0
    assert t.spread == pytest.approx((4.0 - 1.0) / 2.0)
    assert t.tokens_per_second == pytest.approx(50.0)
    d = t.to_dict()
    assert d["runs"] == [2.0, 1.0, 4.0] and d["median"] == 2.0 and d["tokens_per_second"] == 50.0


def test_speedups_hand_checked() -> None:
    base = Timing(runs=[2.0, 2.2, 1.8], output_tokens=100)  # median 2.0 s, 50 tok/s
    # Twice as fast per batch but stops after 40 tokens: elapsed speedup 2.0, token speedup 40/1 / 50 = 0.8.
    short = Timing(runs=[1.0, 1.0, 1.0], output_tokens=40)
    assert speedup(base, short) == pytest.approx(2.0)
    assert token_speedup(base, short) == pytest.approx(0.8)
    # Same tokens, half the time: both speedups agree.
    fast = Timing(runs=[1.0], output_tokens=100)
    assert speedup(base, fast) == pytest.approx(2.0)
    assert token_speedup(base, fast) == pytest.approx(2.0)


def test_speedups_of_zero_times_are_zero_not_errors() -> None:
    zero = Timing(runs=[0.0], output_tokens=0)
    some = Timing(runs=[1.0], output_tokens=10)
    assert speedup(some, zero) == 0.0
    assert token_speedup(zero, some) == 0.0
    assert zero.spread == 0.0 and zero.tokens_per_second == 0.0


runs = st.lists(st.floats(min_value=1e-3, max_value=1e3), min_size=1, max_size=7)


@given(runs, st.integers(min_value=0, max_value=10_000))
def test_timing_properties(values: list[float], tokens: int) -> None:
    t = Timing(runs=values, output_tokens=tokens)
    assert t.best <= t.median <= max(values)
    assert t.spread >= 0.0
    assert t.tokens_per_second == pytest.approx(tokens / t.median)


@given(runs, runs)
def test_speedup_is_reciprocal(a: list[float], b: list[float]) -> None:
    ta, tb = Timing(runs=a, output_tokens=10), Timing(runs=b, output_tokens=10)
    assert math.isclose(speedup(ta, tb) * speedup(tb, ta), 1.0, rel_tol=1e-9)
    # With equal token counts the token speedup is the elapsed speedup.
    assert token_speedup(ta, tb) == pytest.approx(speedup(ta, tb))


class FakeEngine:
    """Returns scripted batches: checks that measure() warms up, repeats and flags non-determinism."""

    def __init__(self, texts_per_call: list[list[str]], seconds: list[float]) -> None:
        self.texts_per_call = texts_per_call
        self.seconds = seconds
        self.calls = 0

    def chat(self, prompts: list[str], sampling: SamplingConfig) -> BatchResult:
        texts, secs = self.texts_per_call[self.calls], self.seconds[self.calls]
        self.calls += 1
        gens = [
            Generation(prompt=p, text=t, prompt_tokens=3, output_tokens=len(t))
            for p, t in zip(prompts, texts, strict=True)
        ]
        return BatchResult(generations=gens, seconds=secs, metadata={"engine": "fake"})


def test_measure_warms_up_then_times_repeats() -> None:
    eng = FakeEngine([["aa", "b"]] * 4, seconds=[9.0, 1.0, 3.0, 2.0])
    result, timing = measure(eng, ["p1", "p2"], SamplingConfig(), warmup=1, repeats=3)  # type: ignore[arg-type]
    assert eng.calls == 4
    assert timing.runs == [1.0, 3.0, 2.0]  # the 9 s warm-up is not timed
    assert timing.median == 2.0
    assert timing.output_tokens == 3
    assert result.texts == ["aa", "b"]
    assert result.metadata["deterministic"] is True


def test_measure_flags_outputs_that_change_between_repeats() -> None:
    eng = FakeEngine([["a"], ["a"], ["b"]], seconds=[1.0, 1.0, 1.0])
    result, _ = measure(eng, ["p"], SamplingConfig(), warmup=1, repeats=2)  # type: ignore[arg-type]
    assert result.metadata["deterministic"] is False


def test_measure_refuses_zero_repeats() -> None:
    with pytest.raises(ValueError, match="repeats"):
        measure(FakeEngine([], []), ["p"], SamplingConfig(), warmup=0, repeats=0)  # type: ignore[arg-type]
