"""bench reruns: each fresh gate run's speed verdicts read back from its report and speed file, and tallied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.bench.reruns import RerunSettings, Verdict, markdown, read_verdicts, rerun_command, summarize
from compress.core.errors import CompressError
from compress.evaluation.speed import SpeedRounds


def _rounds(base: float, cand: float, confirmation: SpeedRounds | None = None) -> SpeedRounds:
    return SpeedRounds(baseline=[base] * 3, candidate=[cand] * 3, tokens=640, batch=10, warmup=2, mode="interleaved",
                       confirmation=confirmation)  # fmt: skip


def _write_rerun(tmp_path: Path, outcomes: dict[str, str], speeds: dict[str, SpeedRounds]) -> Path:
    report = tmp_path / "rerun-01.json"
    models = {v: {"verdict": {"speed": state}} for v, state in outcomes.items()}
    report.write_text(json.dumps({"models": models}), encoding="utf-8")
    (tmp_path / "rerun-01-speed.json").write_text(json.dumps({v: r.to_dict() for v, r in speeds.items()}))
    return report


def test_a_rerun_s_verdicts_come_from_its_report_and_speed_file(tmp_path: Path) -> None:
    confirmed = _rounds(1.0, 1.25, confirmation=_rounds(1.0, 1.3))  # 0.80x, then 0.77x: mean 0.785x
    speeds = {"good": _rounds(1.0, 1.0), "slow": confirmed}
    report = _write_rerun(tmp_path, {"good": "passed", "slow": "failed"}, speeds)
    good, slow, missing = read_verdicts(1, report, ("good", "slow", "gone"))
    assert (good.outcome, good.speedup, good.pairs) == ("passed", 1.0, (1.0,))
    assert slow.outcome == "failed" and slow.pairs == pytest.approx((0.8, 1 / 1.3))
    assert slow.speedup == pytest.approx((0.8 + 1 / 1.3) / 2)
    assert (missing.outcome, missing.speedup, missing.pairs) == ("not run", None, ())


def test_a_rerun_without_a_report_is_an_error_that_names_its_log(tmp_path: Path) -> None:
    with pytest.raises(CompressError, match=r"rerun 3 wrote no report.*rerun-03\.log"):
        read_verdicts(3, tmp_path / "rerun-03.json", ("good",))


def test_the_tally_counts_passes_failures_and_confirmations_per_variant() -> None:
    verdicts = [
        Verdict(1, "good", "passed", 0.98, (0.98,)),
        Verdict(2, "good", "passed", 0.91, (0.86, 0.96)),
        Verdict(1, "slow", "failed", 0.77, (0.79, 0.75)),
        Verdict(2, "slow", "skipped", None, ()),
    ]
    tally = summarize(verdicts)
    assert tally["good"] == {
        "reruns": 2, "passed": 2, "failed": 0, "other": 0, "confirmed": 1,
        "speedup_min": 0.91, "speedup_median": pytest.approx(0.945), "speedup_max": 0.98,
    }  # fmt: skip
    assert (tally["slow"]["failed"], tally["slow"]["other"], tally["slow"]["speedup_max"]) == (1, 1, 0.77)
    table = markdown({"summary": tally})
    assert "| good | 2 | 2 | 0 | 1 | 0.910x / 0.945x / 0.980x |" in table


def test_each_rerun_is_the_gate_s_speed_cases_alone(tmp_path: Path) -> None:
    settings = RerunSettings(models_dir=tmp_path, variants=("good", "slow"), speed_on_cpu=True,
                             pytest_args=("--gate-repeats", "8"))  # fmt: skip
    cmd = rerun_command(settings, tmp_path / "r.json")
    assert cmd[cmd.index("-k") + 1] == "test_speedup" and cmd[cmd.index("--gate-variants") + 1] == "good,slow"
    assert "--gate-speed-on-cpu" in cmd and cmd[-2:] == ["--gate-repeats", "8"]
    assert "--gate-speed-on-cpu" not in rerun_command(RerunSettings(models_dir=tmp_path, variants=("g",)), tmp_path)
