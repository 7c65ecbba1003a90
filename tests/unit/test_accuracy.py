"""Task accuracy (compress.core.accuracy): multiple choice by log-likelihood, short free-text answers in English
and Korean, accuracy with its standard error, and the variant's recovery of the base's accuracy."""

from __future__ import annotations

import math

import pytest

from compress.core.accuracy import (
    Accuracy,
    accuracy,
    chance_accuracy,
    check_short_answer,
    pick_choice,
    recovery,
)

# --- pick_choice ------------------------------------------------------------------------------------------------


def test_pick_choice_by_sum_and_by_length_disagree_where_lengths_differ() -> None:
    logprobs, texts = [-4.0, -5.0], ["ab", "abcdef"]
    assert pick_choice(logprobs, texts) == 0  # -4 beats -5
    assert pick_choice(logprobs, texts, normalize=True) == 1  # -5/6 beats -4/2


def test_pick_choice_normalises_by_characters_as_lm_eval_does() -> None:
    # lm-eval's acc_norm divides by len(choice), characters: a Hangul syllable is 1 here (3 bytes in UTF-8).
    assert pick_choice([-1.5, -2.5], ["가", "ab"], normalize=True) == 1  # -1.5/1 < -2.5/2
    assert pick_choice([-1.5, -2.5], ["가", "ab"]) == 0


def test_pick_choice_ties_go_to_the_first() -> None:
    assert pick_choice([-2.0, -1.0, -1.0]) == 1
    assert pick_choice([-2.0, -2.0], ["ab", "cd"], normalize=True) == 0


def test_pick_choice_refuses_what_it_cannot_score() -> None:
    with pytest.raises(ValueError):
        pick_choice([])
    with pytest.raises(ValueError, match="one text per choice"):
        pick_choice([-1.0, -2.0], normalize=True)
    with pytest.raises(ValueError, match="one text per choice"):
        pick_choice([-1.0, -2.0], ["a"], normalize=True)


# --- check_short_answer -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "answers", "expected"),
    [
        ("The answer is 12.", ["12"], True),
        ("112", ["12"], False),
        ("twelve", ["12"], True),
        ("It is 12.0 exactly", ["12"], True),
        ("1,200 people came", ["1200"], True),
        ("-3 degrees", ["-3"], True),
        ("3 degrees", ["-3"], False),
        ("1 or 12", ["12"], False),  # only the first number counts
        ("twenty-five", ["25"], True),
        ("There were 12; one left.", ["12"], True),  # digits win over the word "one"
        ("No number here", ["12"], False),
    ],
)
def test_numbers_are_compared_as_numbers(response: str, answers: list[str], expected: bool) -> None:
    assert check_short_answer(response, answers) is expected


@pytest.mark.parametrize(
    ("response", "answers", "expected"),
    [
        ("Paris.", ["paris"], True),
        ("Parisian", ["paris"], False),
        ("It's PARIS, of course", ["Paris"], True),
        ("I live in New York City.", ["new york"], True),
        ("newyork", ["new york"], False),
        ("Lyon", ["paris", "lyon"], True),
        ("Marseille", ["paris", "lyon"], False),
    ],
)
def test_words_must_appear_whole(response: str, answers: list[str], expected: bool) -> None:
    assert check_short_answer(response, answers) is expected


@pytest.mark.parametrize(
    ("response", "answers", "expected"),
    [
        ("세종대왕입니다", ["세종대왕"], True),  # copula attached
        ("정답은 세종대왕이에요.", ["세종대왕"], True),
        ("대세종대왕", ["세종대왕"], False),  # the answer must start a word
        ("이순신", ["세종대왕"], False),
        ("일곱 개", ["7", "일곱"], True),
        ("일곱개입니다", ["7"], True),
        ("이 문제의 답은 일곱 개", ["7"], True),  # "이" (this) is not read as 2
        ("여덟 개", ["7", "일곱"], False),
        ("세 명", ["3"], True),
        ("이십오", ["25"], True),
        ("칠", ["7"], True),
        ("정답은 3개입니다", ["3"], True),
    ],
)
def test_korean_answers(response: str, answers: list[str], expected: bool) -> None:
    assert check_short_answer(response, answers) is expected


def test_unicode_forms_are_unified() -> None:
    decomposed = "\u1109\u1166\u110c\u1169\u11bc"  # 세종 as conjoining jamo (NFD)
    assert check_short_answer(decomposed + "입니다", ["세종"]) is True


def test_no_accepted_answers_is_refused() -> None:
    with pytest.raises(ValueError):
        check_short_answer("anything", [])


# --- accuracy, recovery, chance ---------------------------------------------------------------------------------


def test_accuracy_and_its_sample_standard_error() -> None:
    result = accuracy([True, True, False, True])
    assert (result.correct, result.n) == (3, 4)
    assert result.acc == 0.75
    assert result.se == pytest.approx(math.sqrt(0.75 * 0.25 / 3))  # = 0.25, lm-eval's acc_stderr
    assert result.se == pytest.approx(0.25)


def test_accuracy_edge_cases() -> None:
    assert Accuracy(0, 0).acc == 0.0
    assert Accuracy(0, 0).se == 0.0
    assert Accuracy(1, 1).se == 0.0
    assert accuracy([False, False]).se == 0.0


def test_recovery_ratio_se_and_the_items_that_moved() -> None:
    base = [True, True, True, False, True]
    variant = [True, False, True, True, False]
    result = recovery(base, variant)
    assert result.base.acc == pytest.approx(0.8)
    assert result.variant.acc == pytest.approx(0.6)
    assert result.ratio == pytest.approx(0.75)
    assert result.lost == (1, 4)
    assert result.gained == (3,)
    # Residuals v - 0.75 b = (0.25, -0.75, 0.25, 1, -0.75): mean 0, sample variance 2.25 / 4.
    assert result.se == pytest.approx(math.sqrt(2.25 / 4 / 5) / 0.8)


def test_recovery_of_an_identical_variant_is_one_with_no_spread() -> None:
    answers = [True, False, True, True]
    result = recovery(answers, answers)
    assert result.ratio == 1.0
    assert result.se == pytest.approx(0.0, abs=1e-15)
    assert result.lost == () and result.gained == ()


def test_recovery_refuses_undefined_cases() -> None:
    with pytest.raises(ValueError, match="base accuracy is 0: recovery is undefined"):
        recovery([False, False], [True, False])
    with pytest.raises(ValueError, match="pair up"):
        recovery([True, True], [True])


def test_chance_accuracy_is_the_mean_of_one_over_k() -> None:
    assert chance_accuracy([2, 4]) == pytest.approx(0.375)
    assert chance_accuracy([4, 4, 4]) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        chance_accuracy([])
    with pytest.raises(ValueError):
        chance_accuracy([3, 0])
