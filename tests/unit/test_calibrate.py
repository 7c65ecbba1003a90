"""Calibration without a model: floors from synthetic runs, their margins and sanity bounds, the TOML block,
and putting it into a thresholds file (`python -m compress calibrate`; the end-to-end run is
tests/gate/test_own_model.py)."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from compress.cli import main
from compress.core.errors import CompressError
from compress.core.fidelity import PromptFidelity, bootstrap_percentile_se
from compress.core.tasks import TaskItem
from compress.engines import BatchResult, Generation
from compress.evaluation.quality import Quality
from compress.evaluation.run import ModelRun
from compress.evaluation.speed import SpeedRounds
from compress.evaluation.tasks import TaskResult
from compress.gate.calibrate import (
    Measured,
    calibrate_key,
    calibrate_variant,
    ceil_significant,
    failures_under,
    floor_places,
    gate_defaults,
)
from compress.gate.calibrated_block import checked, insert_block, render_block, sanity_text, toml_key
from compress.gate.thresholds import parse_thresholds

ITEMS = [TaskItem(f"q{i}", "en", "arithmetic", f"What is {i} + 1?", (str(i + 1), "0", "99", "7"), 0, (str(i + 1),))
         for i in range(200)]  # fmt: skip
SANITY = "[defaults]\nmax_mean_kl = 0.35\nmax_p99_kl = 3.0\nmin_top1_agreement = 0.75\nmin_task_recovery = 0.75\n"


def _sanity(text: str = SANITY, variant: str = "v"):
    return parse_thresholds(text, Path("thresholds.toml")).for_variant("g", variant, gate_tables=False)


def _tasks(right: int) -> TaskResult:
    correct = [i < right for i in range(len(ITEMS))]
    return TaskResult(
        item_ids=tuple(i.id for i in ITEMS), choice=tuple(0 if c else 1 for c in correct),
        choice_norm=tuple(0 if c else 1 for c in correct), mc_correct=tuple(correct),
        answers=tuple("x" for _ in ITEMS), short_correct=tuple(correct), n_choices=(4,) * len(ITEMS),
    )  # fmt: skip


def _run(name: str, texts: list[str], quality: Quality, speed: SpeedRounds | None = None) -> ModelRun:
    gens = [Generation(f"p{i}", t, 5, 8, "stop") for i, t in enumerate(texts)]
    return ModelRun(name=name, model_dir=f"/m/{name}", result=BatchResult(generations=gens, seconds=0.1),
                    engine={"engine": "vllm", "dtype": "float32", "device": "cpu"}, quality=quality,
                    speed=speed)  # fmt: skip


BASE_TEXTS = ["The sky is blue today.", "Paris is the capital.", "Seven.", "Hello there, friend."]


def _runs(kl_scale: float = 1.0, right: int = 170) -> dict[str, ModelRun]:
    prompts = [
        PromptFidelity(f"p{i}", tuple(kl_scale * (0.05 + 0.01 * ((i * 7 + j) % 5)) for j in range(20)),
                       tuple((i + j) % 10 != 0 for j in range(20)), None, truncated=True)
        for i in range(30)
    ]  # fmt: skip
    base = _run("base", BASE_TEXTS, Quality(tasks=_tasks(180)))
    texts = ["The sky is blue today.", "Paris is a capital city.", "Seven.", "Hi there, friend."]
    variant = _run("v", texts, Quality(fidelity={"gate": prompts}, tasks=_tasks(right)))
    return {"base": base, "v": variant}


def test_rounding_is_outward() -> None:
    assert ceil_significant(0.000791) == 0.000791 and ceil_significant(0.0007911) == 0.000792
    assert ceil_significant(1.2345) == 1.24 and floor_places(0.9639) == 0.963 and floor_places(0.963) == 0.963


def test_a_floor_is_the_value_plus_two_se_or_the_platform_allowance_plus_the_run_range() -> None:
    sampled = Measured("max_mean_kl", (0.10,), 0.004, "SE", 0.002, "platform")
    f = calibrate_key("v", sampled, _sanity())
    assert f.floor == pytest.approx(0.108) and f.source == "2 SE" and not f.fails_sanity
    platform = Measured("max_mean_kl", (0.10,), 0.0001, "SE", 0.002, "platform")
    assert calibrate_key("v", platform, _sanity()).floor == pytest.approx(0.102)
    assert calibrate_key("v", platform, _sanity()).source == "platform"
    two_runs = Measured("min_top1_agreement", (0.90, 0.89), 0.003, "SE", 0.002, "platform")
    f = calibrate_key("v", two_runs, _sanity())
    assert f.floor == pytest.approx(0.895 - 0.006 - 0.01) and "run-to-run range 0.01" in f.source


def test_a_floor_is_never_looser_than_the_sanity_floor_and_says_when_the_value_misses_it() -> None:
    loose = Measured("min_top1_agreement", (0.78,), 0.02, "SE", 0.002, "platform")
    f = calibrate_key("v", loose, _sanity())
    assert f.floor == 0.75 and not f.fails_sanity
    assert f.source == "sanity floor thresholds.toml [defaults] (0.74 would be looser)"
    bad = Measured("max_mean_kl", (0.5,), 0.01, "SE", 0.01, "platform")
    f = calibrate_key("v", bad, _sanity())
    assert f.floor == 0.35 and f.fails_sanity and f.sanity_source == "thresholds.toml [defaults]"
    # a table that holds in every gate is a sanity floor too ([variants.<v>]); the gate's own tables are not
    text = SANITY + "[variants.v]\nmin_top1_agreement = 0.8\n[gates.g.variants.v]\nmin_top1_agreement = 0.99\n"
    assert calibrate_key("v", loose, _sanity(text)).floor == 0.8


def test_calibrating_a_variant_sets_every_key_the_gate_checks_or_says_why_not() -> None:
    runs = _runs()
    c = calibrate_variant("v", [runs], baseline="base", items=ITEMS, sanity=_sanity())
    assert set(c.floors) == {"non_empty_rate", "avg_similarity", "exact_match", "min_similarity", "max_mean_kl",
                             "max_p99_kl", "min_top1_agreement", "min_task_recovery"}  # fmt: skip
    assert c.notes == {"speedup": "not timed in this run (speed cases run on CUDA runners only)"}
    kl = c.floors["max_mean_kl"]
    assert kl.measured.value == pytest.approx(0.07) and kl.floor > kl.measured.value + 2 * kl.measured.spread - 1e-9
    assert c.floors["min_task_recovery"].measured.label in ("multiple choice", "short answer")
    assert c.floors["min_task_recovery"].floor < 170 / 180
    assert c.floors["exact_match"].floor == 0.0  # 2 of 4 prompts: two binomial SEs span everything
    assert c.floors["non_empty_rate"].floor == 1.0 and c.floors["non_empty_rate"].margin == 0


def test_task_recovery_is_not_calibrated_where_the_baseline_guesses() -> None:
    runs = _runs()
    runs["base"].quality.tasks = _tasks(50)  # 0.25 on four choices: chance
    c = calibrate_variant("v", [runs], baseline="base", items=ITEMS, sanity=_sanity())
    assert "min_task_recovery" not in c.floors and "not clearly above chance" in c.notes["min_task_recovery"]


def test_speed_is_calibrated_where_the_runs_timed_it() -> None:
    runs = _runs()
    runs["v"].speed = SpeedRounds([1.0] * 8, [1.0, 0.98, 1.02, 1.0, 0.99, 1.01, 1.0, 1.0], 640, 10, 2, "vllm")
    f = calibrate_variant("v", [runs], baseline="base", items=ITEMS, sanity=_sanity()).floors["speedup"]
    assert f.floor == 0.9 and f.source.startswith("10%: a fresh engine pair")  # more than 2 SE of these rounds
    runs["v"].speed = SpeedRounds([1.0] * 8, [1.3] * 8, 640, 10, 2, "vllm")
    f = calibrate_variant("v", [runs], baseline="base", items=ITEMS, sanity=_sanity()).floors["speedup"]
    assert f.floor == 0.8 and f.fails_sanity  # 0.77x: slower than the sanity floor allows


def test_the_calibrated_floors_pass_the_runs_they_came_from_and_fail_a_worse_copy(tmp_path: Path) -> None:
    runs = _runs()
    calibrations = [calibrate_variant("v", [runs], baseline="base", items=ITEMS, sanity=_sanity())]
    block = render_block("g", calibrations, gate_defaults(calibrations), ["test"])
    th = checked(sanity_text(parse_thresholds(SANITY, tmp_path / "t.toml")) + block, tmp_path / "t.toml", "g",
                 calibrations)  # fmt: skip
    common = {"gate": "g", "baseline": "base", "thresholds": th, "items": ITEMS, "prompt_ids": ["a", "b", "c", "d"]}
    assert failures_under(runs, variants=["v"], **common) == {"v": []}
    worse = _runs(kl_scale=1.3)
    assert [m.split(":")[0] for m in failures_under(worse, variants=["v"], **common)["v"]] == ["fidelity"]
    # a variant added later gets the gate's defaults: the calibrated scale, not [defaults]
    worse["w"] = worse.pop("v")
    assert failures_under(worse, variants=["w"], **common)["w"][0].startswith("fidelity: w vs base: mean KL")


def test_the_block_is_valid_toml_with_a_comment_per_floor_and_quotes_names_toml_cannot_take_bare() -> None:
    runs = _runs()
    runs["v.2"] = runs.pop("v")
    runs["v.2"].name = "v.2"
    c = [calibrate_variant("v.2", [runs], baseline="base", items=ITEMS, sanity=_sanity(variant="v.2"))]
    block = render_block("my gate", c, gate_defaults(c), ["python -m compress calibrate, today", "more"])
    data = tomllib.loads(block)
    table = data["gates"]["my gate"]["variants"]["v.2"]
    assert table["max_mean_kl"] == c[0].floors["max_mean_kl"].floor
    assert data["gates"]["my gate"]["defaults"]["max_mean_kl"] == table["max_mean_kl"]
    assert "# speedup: not timed in this run" in block
    assert "max_mean_kl = " in block and "(clustered SE over 30 prompts); margin" in block
    assert block.startswith("# --- calibrated: gate my gate (python -m compress calibrate, today) ---\n# more\n")
    assert toml_key("compressed-l29") == "compressed-l29" and toml_key("a.b") == '"a.b"'


def _block(gate: str = "g", scale: float = 1.0) -> tuple[str, list]:
    c = [calibrate_variant("v", [_runs(scale)], baseline="base", items=ITEMS, sanity=_sanity())]
    return render_block(gate, c, gate_defaults(c), ["test"]), c


def test_insert_appends_then_replaces_only_its_own_block(tmp_path: Path) -> None:
    file = tmp_path / "thresholds.toml"
    original = SANITY + "# a comment the user wrote\n[gates.other.defaults]\nmax_mean_kl = 0.2\n"
    first, c = _block()
    once = insert_block(original, "g", first, file)
    assert once.startswith(original) and once.endswith(first)
    checked(once, file, "g", c)
    second, c2 = _block(scale=2.0)
    twice = insert_block(once + "\n# after\n", "g", second, file)
    assert twice == original + "\n" + second + "\n# after\n"  # the old block gone, everything else kept
    assert checked(twice, file, "g", c2).for_variant("g", "v").floors.max_mean_kl == c2[0].floors["max_mean_kl"].floor
    other, _ = _block(gate="g2")
    assert insert_block(twice, "g2", other, file).count("# --- calibrated: gate") == 2


def test_insert_refuses_hand_written_tables_for_the_gate_and_broken_markers(tmp_path: Path) -> None:
    file = tmp_path / "thresholds.toml"
    block, _ = _block()
    with pytest.raises(CompressError, match=r"already has hand-written tables for gate g .*--gate-name"):
        insert_block(SANITY + "[gates.g.variants.v]\nmax_mean_kl = 0.1\n", "g", block, file)
    half = block.split("# --- end")[0]
    with pytest.raises(CompressError, match="unmatched or repeated calibrated-block marker for gate g"):
        insert_block(SANITY + half, "g", block, file)
    # a hand-written table beside a calibrated block: the result would repeat a table, and it is refused
    with pytest.raises(CompressError, match="not valid TOML"):
        checked(insert_block(SANITY + block, "g", block, file) + "[gates.g.variants.v]\n", file, "g", [])


def test_bootstrap_se_of_a_percentile_is_seeded_and_needs_two_prompts() -> None:
    prompts = [PromptFidelity(f"p{i}", tuple(0.01 * (1 + i % 5) * ((i * 13 + j) % 17) for j in range(30)),
                              (True,) * 30, None, True) for i in range(20)]  # fmt: skip
    se = bootstrap_percentile_se(prompts)
    assert se > 0 and se == bootstrap_percentile_se(prompts)
    assert bootstrap_percentile_se(prompts[:1]) == 0.0
    inf = [*prompts, PromptFidelity("x", (math.inf,), (False,), None, True)]
    assert bootstrap_percentile_se(inf) == math.inf


def test_the_command_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["calibrate"]) == 2
    assert "calibrate needs --gate-models-dir" in capsys.readouterr().err
    (tmp_path / "base").mkdir()
    assert main(["calibrate", f"--gate-models-dir={tmp_path}"]) == 2
    assert "holds only the baseline: nothing to calibrate. Fix: build the variants first" in capsys.readouterr().err
    assert main(["calibrate", f"--gate-models-dir={tmp_path}", "--gate-report=/tmp/x.json"]) == 2
    assert "leave out --gate-report" in capsys.readouterr().err
    assert main(["calibrate", f"--gate-models-dir={tmp_path / 'nope'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
