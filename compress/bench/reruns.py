"""How reliable the speed verdict is: the gate's speed cases run again and again, each time a new pytest with
new engines, and every verdict tabulated.

A floor is worth what it does across fresh engine starts: on the H200 one fresh pair of engines of the same
model read 0.899 where rounds within a pair ranged 0.987-1.037. So the question a floor must answer is not
"did it pass once" but "does a good variant pass every rerun, and a variant 1.3x slower end to end fail every
one" (issue 19). Each rerun is ``pytest tests/gate/test_release_gate.py -k test_speedup`` over the same
folder, with its own report; the verdict, the speedup and each engine pair's median (two when the reading
landed near its floor and was confirmed) come from that report and its speed file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

import compress
from compress.core.errors import CompressError
from compress.evaluation.speed import SpeedRounds
from compress.folders.matrix import BASELINE
from compress.gate.child_env import child_env
from compress.gate.report import speed_file_for

GATE_TEST = "tests/gate/test_release_gate.py"


@dataclass(frozen=True)
class RerunSettings:
    models_dir: Path
    variants: tuple[str, ...]
    """The candidates timed in every rerun (e.g. a good one and a known-slow one)."""
    runs: int = 10
    baseline: str = BASELINE
    speed_on_cpu: bool = False
    """Time on a host without CUDA (``--gate-speed-on-cpu``): evidence about the verdict rule on this CPU only."""
    pytest_args: tuple[str, ...] = ()
    repo: Path = field(default_factory=lambda: Path(compress.__file__).resolve().parents[1])


@dataclass(frozen=True)
class Verdict:
    """One variant's speed case in one rerun."""

    rerun: int
    variant: str
    outcome: str
    """passed, failed, skipped, not run (from the gate's report)."""
    speedup: float | None
    """The verdict's statistic: one pair's median of per-round ratios, or the mean of two pairs' medians."""
    pairs: tuple[float, ...]
    """Each fresh engine pair's median (two: the first landed near the floor and was confirmed)."""


def rerun_command(settings: RerunSettings, report: Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "pytest", GATE_TEST, "-k", "test_speedup", "-p", "no:cacheprovider", "-q",
        f"--rootdir={settings.repo}", "--gate-models-dir", str(settings.models_dir),
        "--gate-baseline", settings.baseline, "--gate-variants", ",".join(settings.variants),
        "--gate-report", str(report),
    ]  # fmt: skip
    if settings.speed_on_cpu:
        cmd.append("--gate-speed-on-cpu")
    return [*cmd, *settings.pytest_args]


def read_verdicts(rerun: int, report: Path, variants: tuple[str, ...]) -> list[Verdict]:
    """Each variant's speed verdict from one rerun's report and speed file."""
    if not report.is_file():
        raise CompressError(f"rerun {rerun} wrote no report at {report}", f"see {report.with_suffix('.log')}")
    models = json.loads(report.read_text(encoding="utf-8")).get("models", {})
    speed_file = speed_file_for(report)
    rounds = json.loads(speed_file.read_text(encoding="utf-8")) if speed_file.is_file() else {}
    found = []
    for variant in variants:
        model = models.get(variant) or {}
        verdict = model.get("verdict") or {}
        timed = SpeedRounds.from_dict(rounds[variant]) if variant in rounds else None
        found.append(
            Verdict(
                rerun=rerun,
                variant=variant,
                outcome=str(verdict.get("speed", "not run")),
                speedup=timed.speedup if timed else None,
                pairs=tuple(p.paired.paired for p in timed.pairs) if timed else (),
            )
        )
    return found


def run_reruns(settings: RerunSettings, work: Path, *, progress: bool = True) -> dict:
    """``settings.runs`` fresh gate runs of the speed cases; every report and log stays under ``work``."""
    if settings.runs < 1:
        raise CompressError(f"--runs must be at least 1, got {settings.runs}", "pass --runs 10")
    if not settings.variants:
        raise CompressError("no variants to time", "pass --variants, e.g. --variants good,slow")
    work.mkdir(parents=True, exist_ok=True)
    verdicts: list[Verdict] = []
    walls: list[float] = []
    for i in range(1, settings.runs + 1):
        report = work / f"rerun-{i:02d}.json"
        started = time.perf_counter()
        with report.with_suffix(".log").open("w", encoding="utf-8") as log:
            subprocess.run(rerun_command(settings, report), cwd=settings.repo, env=child_env(), stdout=log,
                           stderr=subprocess.STDOUT, check=False)  # fmt: skip
        walls.append(time.perf_counter() - started)
        found = read_verdicts(i, report, settings.variants)
        verdicts += found
        if progress:
            line = ", ".join(f"{v.variant} {v.outcome} {_x(v.speedup)}{_pairs(v)}" for v in found)
            print(f"rerun {i}/{settings.runs} ({walls[-1]:.0f} s): {line}", file=sys.stderr, flush=True)
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "reruns": [asdict(v) for v in verdicts],
        "summary": summarize(verdicts),
        "wall_seconds": walls,
    }


def summarize(verdicts: list[Verdict]) -> dict[str, dict]:
    """Per variant: how many reruns passed and failed, the spread of the speedups, how many were confirmed."""
    out: dict[str, dict] = {}
    for variant in dict.fromkeys(v.variant for v in verdicts):
        mine = [v for v in verdicts if v.variant == variant]
        speeds = [v.speedup for v in mine if v.speedup is not None]
        out[variant] = {
            "reruns": len(mine),
            "passed": sum(v.outcome == "passed" for v in mine),
            "failed": sum(v.outcome == "failed" for v in mine),
            "other": sum(v.outcome not in ("passed", "failed") for v in mine),
            "confirmed": sum(len(v.pairs) > 1 for v in mine),
            "speedup_min": min(speeds) if speeds else None,
            "speedup_median": median(speeds) if speeds else None,
            "speedup_max": max(speeds) if speeds else None,
        }
    return out


def markdown(result: dict) -> str:
    rows = [
        "| variant | reruns | passed | failed | confirmed (near the floor) | speedup min / median / max |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for variant, s in result["summary"].items():
        spread = " / ".join(_x(s[k]) for k in ("speedup_min", "speedup_median", "speedup_max"))
        rows.append(f"| {variant} | {s['reruns']} | {s['passed']} | {s['failed']} | {s['confirmed']} | {spread} |")
    return "\n".join(rows)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}x"


def _pairs(v: Verdict) -> str:
    return f" (pairs {', '.join(f'{p:.3f}' for p in v.pairs)})" if len(v.pairs) > 1 else ""
