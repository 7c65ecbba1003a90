"""Interleaved timing primitives (compress/evaluation/timing.py): order, warm-up, pairing, spread."""

from __future__ import annotations

import pytest

from compress.evaluation.timing import interleave, paired_speedup, round_ratios, summarize, timed


def recorder(log: list[str], name: str, seconds: list[float]):
    values = iter(seconds)

    def run() -> float:
        log.append(name)
        return next(values)

    return run


def test_interleave_runs_each_round_in_turn_and_drops_warmup() -> None:
    log: list[str] = []
    runners = {
        "a": recorder(log, "a", [9.0, 1.0, 2.0, 3.0]),
        "b": recorder(log, "b", [8.0, 4.0, 5.0, 6.0]),
    }
    times = interleave(runners, rounds=3, warmup=1)
    assert log == ["a", "b"] * 4
    assert times == {"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]}


def test_interleave_rotate_moves_the_first_runner() -> None:
    log: list[str] = []
    runners = {n: recorder(log, n, [1.0] * 3) for n in "abc"}
    interleave(runners, rounds=3, rotate=True)
    assert log == list("abc") + list("bca") + list("cab")


def test_interleave_reports_progress_with_negative_warmup_rounds() -> None:
    seen: list[tuple[str, int]] = []
    interleave({"a": lambda: 1.0}, rounds=2, warmup=1, progress=lambda n, r: seen.append((n, r)))
    assert seen == [("a", -1), ("a", 0), ("a", 1)]


@pytest.mark.parametrize("rounds, warmup", [(0, 0), (1, -1)])
def test_interleave_rejects_bad_counts(rounds: int, warmup: int) -> None:
    with pytest.raises(ValueError):
        interleave({"a": lambda: 1.0}, rounds=rounds, warmup=warmup)


def test_timed_returns_wall_seconds() -> None:
    seconds = timed(lambda: sum(range(1000)))()
    assert 0 <= seconds < 1


def test_summarize_quartiles_match_linear_interpolation() -> None:
    s = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s.n, s.median, s.min, s.max, s.q1, s.q3, s.iqr) == (5, 3.0, 1.0, 5.0, 2.0, 4.0, 2.0)
    two = summarize([1.0, 2.0])
    assert (two.q1, two.q3) == (1.25, 1.75)
    assert summarize([7.0]).iqr == 0.0
    with pytest.raises(ValueError):
        summarize([])


def test_round_ratios_pair_runs_by_index() -> None:
    assert round_ratios([2.0, 3.0], [1.0, 3.0]) == [2.0, 1.0]
    with pytest.raises(ValueError):
        round_ratios([1.0], [1.0, 2.0])


def test_paired_speedup_cancels_drift_that_the_medians_keep() -> None:
    # Drift: the machine slows 3x over the run; the candidate is always 2x faster within its round.
    base = [1.0, 2.0, 3.0, 3.0, 3.0]
    cand = [0.5, 1.0, 1.5, 1.5, 1.5]
    assert paired_speedup(base, cand).paired == pytest.approx(2.0)
    # Runs taken at different times (not paired) show up in the ratio of medians, not in the paired one.
    drifting = paired_speedup([1.0, 1.0, 1.0], [0.5, 2.0, 2.0])
    assert drifting.of_medians == pytest.approx(0.5)
    assert drifting.rounds.max == pytest.approx(2.0)
    assert drifting.to_dict()["rounds"]["n"] == 3
