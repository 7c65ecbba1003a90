"""Task accuracy on questions with checkable answers, for gating a compressed variant against its base.

Two ways to score an item: multiple choice by log-likelihood (lm-evaluation-harness's ``multiple_choice``: ``acc``
picks the choice with the highest summed logprob, ``acc_norm`` divides that by the choice's length in characters)
and short free-text answers checked by fixed, documented rules (``check_short_answer``). Then accuracy with its
standard error, and the variant's recovery of the base's accuracy on the same items. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass


def pick_choice(logprobs: Sequence[float], texts: Sequence[str] | None = None, *, normalize: bool = False) -> int:
    """The index of the choice the model prefers: highest summed logprob (ties: the first), or with ``normalize``
    highest logprob per character of the choice's text, as lm-eval's ``acc_norm`` does (``len(choice)``: a
    longer continuation is not penalised for having more tokens to pay for)."""
    if not logprobs:
        raise ValueError("no choices to pick from")
    scores = list(logprobs)
    if normalize:
        if texts is None or len(texts) != len(scores):
            raise ValueError("normalize needs one text per choice")
        if any(not text for text in texts):
            raise ValueError("normalize needs non-empty choice texts (the length divides the logprob)")
        scores = [lp / len(text) for lp, text in zip(scores, texts, strict=True)]
    best = 0
    for index, score in enumerate(scores):
        if score > scores[best]:
            best = index
    return best


# --- short free-text answers -------------------------------------------------------------------------------------

# Digits with an optional sign, thousands commas (only as groups of three) and a decimal part. "1,2345" reads as 1,
# "3." at a sentence end as 3. A sign counts only where it does not follow a letter/digit ("3-5" is 3, then 5).
_DIGITS = re.compile(r"(?:(?<![\w.])[-+])?(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?![\d,]\d)|\d+)(?:\.\d+)?")

_EN_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
).split()
_EN_WORDS = {word: value for value, word in enumerate(_EN_UNITS)}
_EN_TENS = {word: 10 * k for k, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}

# Korean: native numerals read as a whole word or with a counter/particle attached ("일곱", "일곱개", "셋이");
# their attributive forms only before a counter ("한 개", "세명"); Sino-Korean tens compounds ("십", "이십오")
# like native numerals. A lone Sino-Korean digit (일, 이, 사, 오 ...) is also a common word ("이 문제" = this
# problem, "일" = work), so it counts only when it is the whole text, with at most a counter ("칠", "칠 년").
_KO_NATIVE = dict(zip("하나 둘 셋 넷 다섯 여섯 일곱 여덟 아홉 열 스물".split(), (*range(1, 11), 20), strict=True))
_KO_ATTRIBUTIVE = {"한": 1, "두": 2, "세": 3, "네": 4, "스무": 20}
_KO_SINO = {"영": 0, "공": 0, "일": 1, "이": 2, "삼": 3, "사": 4, "오": 5, "육": 6, "칠": 7, "팔": 8, "구": 9}
_KO_SINO_TENS = re.compile(r"([이삼사오육칠팔구])?십([일이삼사오육칠팔구])?")
_KO_COUNTERS = (
    "개월 개 명 마리 사람 살 권 장 대 잔 병 채 송이 그루 켤레 벌 가지 시간 시 분 초 년 월 일 주 원 층 번 회 호 "
    "도 점 달 쪽 줄 배 인분"
).split()
_KO_PARTICLES = (
    "입니다 이에요 예요 이요 이다 이고 이며 이야 으로 은 는 이 가 을 를 의 에 요 도 만 로 와 과 야 다"
).split()


def _is_hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3" or "\u1100" <= char <= "\u11ff" or "\u3130" <= char <= "\u318f"


def _normalize(text: str) -> str:
    """NFC, casefold, punctuation and symbols to spaces, runs of whitespace to one space."""
    text = unicodedata.normalize("NFC", text).casefold()
    text = "".join(" " if unicodedata.category(char)[0] in "PS" else char for char in text)
    return " ".join(text.split())


def _counter_tail(rest: str) -> bool:
    """``rest`` is a counter, optionally followed by a particle ("개", "개입니다")."""
    return any(rest.startswith(c) and rest[len(c) :] in ("", *_KO_PARTICLES) for c in _KO_COUNTERS)


def _tail(rest: str) -> bool:
    """What may follow a Korean numeral inside its word: nothing, a particle, or a counter (+ particle)."""
    return rest == "" or rest in _KO_PARTICLES or _counter_tail(rest)


def _korean_number(words: Sequence[str], i: int, *, alone: bool) -> float | None:
    """The number Korean word ``words[i]`` spells, by the rules above. ``alone``: the text is this numeral with at
    most a counter, so a lone Sino-Korean digit counts too."""
    word = words[i]
    following = words[i + 1] if i + 1 < len(words) else ""
    for forms, needs_counter in ((_KO_NATIVE, False), (_KO_ATTRIBUTIVE, True)):
        for form, value in forms.items():
            if word.startswith(form):
                rest = word[len(form) :]
                if needs_counter and (_counter_tail(rest) or (rest == "" and _counter_tail(following))):
                    return value
                if not needs_counter and _tail(rest):
                    return value
    tens = _KO_SINO_TENS.match(word)
    if tens and _tail(word[tens.end() :]):
        high, low = tens.groups()
        return 10 * (_KO_SINO[high] if high else 1) + (_KO_SINO[low] if low else 0)
    if alone and word[:1] in _KO_SINO and _tail(word[1:]):
        return _KO_SINO[word[0]]
    return None


def _word_number(words: Sequence[str], i: int, *, alone: bool) -> tuple[float, int] | None:
    """The number spelled at ``words[i]`` and how many words it takes, or None."""
    word = words[i]
    if word in _EN_TENS and i + 1 < len(words) and words[i + 1] in _EN_WORDS and 0 < _EN_WORDS[words[i + 1]] < 10:
        return _EN_TENS[word] + _EN_WORDS[words[i + 1]], 2  # "twenty five" (the hyphen became a space)
    if word in _EN_WORDS:
        return _EN_WORDS[word], 1
    if word in _EN_TENS:
        return _EN_TENS[word], 1
    value = _korean_number(words, i, alone=alone)
    return None if value is None else (value, 1)


def _digits_value(match: str) -> float:
    return float(match.replace(",", ""))


def _as_number(answer: str) -> float | None:
    """An accepted answer's value when the whole answer is one number (digits or a number word), else None."""
    raw = unicodedata.normalize("NFC", answer).strip()
    match = _DIGITS.fullmatch(raw.rstrip("."))
    if match:
        return _digits_value(match.group())
    words = _normalize(answer).split()
    if not words:
        return None
    found = _word_number(words, 0, alone=len(words) <= 2)
    if found is None:
        return None
    value, used = found
    rest = words[used:]
    if rest and not (len(rest) == 1 and _counter_tail(rest[0])):
        return None
    return value


def _first_number(response: str) -> float | None:
    """The response's first number: its first number in digits if it has any, else its first number word."""
    match = _DIGITS.search(unicodedata.normalize("NFC", response))
    if match:
        return _digits_value(match.group())
    words = _normalize(response).split()
    alone = len(words) == 1 or (len(words) == 2 and _counter_tail(words[1]))
    for i in range(len(words)):
        found = _word_number(words, i, alone=alone)
        if found is not None:
            return found[0]
    return None


def _contains_words(response_words: Sequence[str], answer_words: Sequence[str]) -> bool:
    """The answer's words appear consecutively; a last word ending in Hangul may start a longer word (a particle
    or copula attached: "세종대왕입니다")."""
    k = len(answer_words)
    last = answer_words[-1]
    open_end = _is_hangul(last[-1])
    for start in range(len(response_words) - k + 1):
        head = response_words[start : start + k - 1]
        tail = response_words[start + k - 1]
        if list(head) == list(answer_words[:-1]) and (tail == last or (open_end and tail.startswith(last))):
            return True
    return False


def check_short_answer(response: str, answers: Sequence[str]) -> bool:
    """True when the free-text response gives one of the accepted answers.

    Numbers: when the first accepted answer is a number, the response's first number must equal the value of one
    of the accepted answers that are numbers ("12" and "12.0" are equal). A number is digits with optional sign,
    decimal part and thousands commas; or, only when the response has no digits at all (because "one", "이" and
    "일" are also ordinary words), a number word: English zero..twenty and the tens (with a unit: "twenty-five");
    Korean native numerals 하나..열, 스물 as a word or with a counter or particle attached ("일곱 개", "셋이"),
    their attributive forms 한/두/세/네/스무 before a counter ("세 명"), Sino-Korean tens 십..구십구 ("이십오");
    a lone Sino-Korean digit 영/공/일/이/삼/사/오/육/칠/팔/구 only when it is the whole response, with at most a
    counter. Only the first number counts: "112" does not give 12, and "1 or 12" gives 1.

    Words: otherwise the normalised response (NFC, casefold, punctuation and symbols removed, spaces collapsed)
    must contain a normalised accepted answer as whole words ("Paris." gives "paris", "Parisian" does not). An
    answer ending in Hangul may start a longer word, since Korean attaches particles and the copula
    ("세종대왕입니다" gives "세종대왕"); it must still start the word.
    """
    if not answers:
        raise ValueError("no accepted answers to check against")
    if _as_number(answers[0]) is not None:
        wanted = {v for a in answers if (v := _as_number(a)) is not None}
        given = _first_number(response)
        return given is not None and any(math.isclose(given, v, rel_tol=1e-9, abs_tol=0.0) for v in wanted)
    response_words = _normalize(response).split()
    for answer in answers:
        answer_words = _normalize(answer).split()
        if answer_words and _contains_words(response_words, answer_words):
            return True
    return False


# --- accuracy and recovery ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    """Items right out of items scored."""

    correct: int
    n: int

    @property
    def acc(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def se(self) -> float:
        """Sample standard error sqrt(p(1-p)/(n-1)), what lm-eval reports as ``acc_stderr``; 0.0 when n < 2."""
        if self.n < 2:
            return 0.0
        p = self.acc
        return math.sqrt(p * (1.0 - p) / (self.n - 1))


def accuracy(correct: Sequence[bool]) -> Accuracy:
    """Count the right answers among per-item verdicts."""
    return Accuracy(correct=sum(bool(c) for c in correct), n=len(correct))


@dataclass(frozen=True)
class Recovery:
    """How much of the base's accuracy the variant keeps on the same items, and which items moved."""

    ratio: float  # variant accuracy / base accuracy (llm-compressor's lm-eval tests gate on this >= 0.95)
    se: float  # delta-method SE for paired items: sqrt(var(v_i - ratio*b_i) / n) / mean(b)
    base: Accuracy
    variant: Accuracy
    lost: tuple[int, ...]  # indices the base got right and the variant wrong
    gained: tuple[int, ...]  # the other way round


def recovery(base: Sequence[bool], variant: Sequence[bool]) -> Recovery:
    """The variant's accuracy as a share of the base's, on paired items: the SE uses the pairing (both models
    answer the same questions, so most of the per-item noise cancels). The variance is the sample variance
    (n - 1), as in ``Accuracy.se``; 0.0 with fewer than two items."""
    if len(base) != len(variant):
        raise ValueError(f"base has {len(base)} verdicts and the variant {len(variant)}: they must pair up")
    base_acc, variant_acc = accuracy(base), accuracy(variant)
    if base_acc.correct == 0:
        raise ValueError("base accuracy is 0: recovery is undefined")
    ratio = variant_acc.acc / base_acc.acc
    residuals = [float(bool(v)) - ratio * float(bool(b)) for b, v in zip(base, variant, strict=True)]
    se = math.sqrt(statistics.variance(residuals) / len(residuals)) / base_acc.acc if len(residuals) > 1 else 0.0
    lost = tuple(i for i, (b, v) in enumerate(zip(base, variant, strict=True)) if b and not v)
    gained = tuple(i for i, (b, v) in enumerate(zip(base, variant, strict=True)) if v and not b)
    return Recovery(ratio=ratio, se=se, base=base_acc, variant=variant_acc, lost=lost, gained=gained)


def chance_accuracy(n_choices: Sequence[int]) -> float:
    """Mean of 1/k over the items: what guessing scores on multiple choice, the floor a variant must beat."""
    if not n_choices:
        raise ValueError("no items")
    if any(k < 1 for k in n_choices):
        raise ValueError("every item needs at least one choice")
    return math.fsum(1.0 / k for k in n_choices) / len(n_choices)


def above_chance(correct: Sequence[bool], chance: float) -> bool:
    """Clearly better than guessing: accuracy minus two standard errors above ``chance``. Below that, a ratio
    of another model's accuracy to this one measures noise."""
    acc = accuracy(correct)
    return acc.acc - 2 * acc.se > chance


MAX_RECOVERY_SE = 0.08
"""A recovery with a larger standard error is reported, not judged: two SEs would span a floor's whole margin
(on 254 items the short answers of a 135M model, 12 % right, gave +-0.15)."""


def supports_recovery(correct: Sequence[bool], chance: float, max_se: float = MAX_RECOVERY_SE) -> bool:
    """Whether a baseline's verdicts can carry a recovery ratio: clearly above chance, and right often enough
    that even a variant matching it item for item would be measured to +-``max_se`` or better (the paired SE
    is at least sqrt((1 - p) / (n p)) when the variant loses nothing but noise)."""
    acc = accuracy(correct)
    if not above_chance(correct, chance) or acc.correct == 0:
        return False
    return math.sqrt((1.0 - acc.acc) / acc.correct) <= max_se
