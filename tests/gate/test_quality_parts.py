"""The gate's quality verdicts without a model: fidelity and task-accuracy checks, their messages, the data's
trip through JSON, the report's new fields, and the multiple-choice split of context and continuation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from compress.core.fidelity import Divergence, PromptFidelity, TokenLogprobs
from compress.core.prompts import Prompt
from compress.core.tasks import TaskItem, load_tasks
from compress.engines import BatchResult, Generation, SamplingConfig
from compress.engines.base import ScoreRequest
from compress.evaluation.fidelity import Reference
from compress.evaluation.quality import Quality
from compress.evaluation.run import ModelRun, run_from_dict, run_to_dict
from compress.evaluation.tasks import TaskResult, mc_request
from compress.evaluation.timing import Timing
from compress.gate.checks import GateFailure, check_fidelity, check_task_accuracy, task_verdicts
from compress.gate.thresholds import load_thresholds
from compress.reports import write_compare_reports
from compress.reports.compare import build_report
from compress.reports.json_report import CompareReport, Settings
from compress.reports.table import markdown_table

REPO = Path(__file__).resolve().parents[2]
ITEMS = [TaskItem(f"q{i}", "en", "arithmetic", f"What is {i} + 1?", (str(i + 1), "0", "99", "7"), 0, (str(i + 1),))
         for i in range(200)]  # fmt: skip


def _floors(tmp_path: Path, text: str = ""):
    file = tmp_path / "thresholds.toml"
    file.write_text(text, encoding="utf-8")
    return load_thresholds(file).for_variant("g", "v")


def _prompt(pid: str, kl: list[float], agree: list[bool], divergence: Divergence | None = None) -> PromptFidelity:
    return PromptFidelity(pid, tuple(kl), tuple(agree), divergence, truncated=True)


def test_fidelity_passes_under_its_floors_and_returns_the_summary(tmp_path: Path) -> None:
    th = _floors(tmp_path, "[defaults]\nmax_mean_kl = 0.2\nmax_p99_kl = 2.0\nmin_top1_agreement = 0.5\n")
    s = check_fidelity(variant="v", baseline="base", prompts=[_prompt("a", [0.1, 0.1], [True, True])], thresholds=th)
    assert s.mean_kl == pytest.approx(0.1) and s.top1_agreement == 1.0


def test_fidelity_failure_says_every_miss_the_worst_prompts_and_where_greedy_choices_part(tmp_path: Path) -> None:
    th = _floors(tmp_path, "[gates.g.variants.v]\nmax_mean_kl = 0.2\nmax_p99_kl = 1.0\nmin_top1_agreement = 0.9\n")
    flip = Divergence(index=3, base_token=11, variant_token=22, base_in_variant_top5=True, variant_in_base_top5=False)
    prompts = [
        _prompt("calm", [0.01] * 4, [True] * 4),
        _prompt("hello", [0.0, 0.1, 0.2, 3.0], [True] * 3 + [False], flip),
    ]
    with pytest.raises(GateFailure) as err:
        check_fidelity(
            variant="v", baseline="base", prompts=prompts, thresholds=th, decode=lambda t: f"<{t}>", top_k=20
        )
    text = str(err.value)
    first = text.splitlines()[0]
    assert first.startswith("fidelity: v vs base: mean KL 0.4175 > max 0.2000 (over by 0.2175")
    assert "p99 KL 2.804" in first and "> max 1.000" in first
    assert "top-1 agreement 0.875 < min 0.900 (short by 0.025" in first
    assert "floor from thresholds.toml [gates.g.variants.v]" in first
    assert "2 prompts, 8 answer tokens (top-20 lower bound)" in text
    assert "moved most (mean KL per prompt): hello 0.825, calm 0.010" in text
    assert (
        "hello: greedy choices part at answer token 3: base '<11>' (in v's top-5: yes), v '<22>' (in base's top-5: no)"
        in text
    )


def _tasks(correct: list[bool], short: list[bool] | None = None) -> TaskResult:
    short = short if short is not None else correct
    return TaskResult(
        item_ids=tuple(i.id for i in ITEMS), choice=tuple(0 if c else 1 for c in correct),
        choice_norm=tuple(0 if c else 1 for c in correct), mc_correct=tuple(correct),
        answers=tuple(i.answers[0] if s else "no idea" for i, s in zip(ITEMS, short, strict=True)),
        short_correct=tuple(short), n_choices=(4,) * len(ITEMS),
    )  # fmt: skip


def test_a_recovery_too_uncertain_for_a_floor_is_reported_not_judged() -> None:
    few = ITEMS[:40]
    base, worse = _tasks([True] * 36 + [False] * 4 + [True] * 160), _tasks([True] * 20 + [False] * 180)
    cut = [TaskResult(**{k: v[:40] for k, v in r.__dict__.items()}) for r in (base, worse)]
    verdict = task_verdicts(cut[0], cut[1], few)[0]
    note = verdict.note or ""
    assert verdict.recovery is None and "recovery 0.556 +- 0.084" in note and "SE > 0.08" in note


def test_a_format_where_the_baseline_guesses_is_not_judged() -> None:
    guessing = [i % 4 == 0 for i in range(200)]  # 0.25: chance on four choices
    verdicts = task_verdicts(_tasks(guessing, [False] * 200), _tasks(guessing, [False] * 200), ITEMS)
    assert [v.recovery for v in verdicts] == [None, None]
    assert "multiple choice: not judged, the baseline's accuracy 0.250 (50/200" in (verdicts[0].note or "")
    assert "is not clearly above chance (0.25)" in (verdicts[0].note or "")


def test_task_recovery_failure_names_the_format_the_ratio_and_items_lost(tmp_path: Path) -> None:
    base = _tasks([True] * 180 + [False] * 20)
    worse = _tasks([True] * 100 + [False] * 100)
    verdicts = task_verdicts(base, worse, ITEMS)
    assert verdicts[0].recovery is not None and verdicts[0].recovery.ratio == pytest.approx(100 / 180)
    with pytest.raises(GateFailure) as err:
        check_task_accuracy(variant="v", baseline="base", verdicts=verdicts, items=ITEMS, mine=worse, base=base,
                            thresholds=_floors(tmp_path))  # fmt: skip
    text = str(err.value)
    assert "multiple choice: accuracy 0.500 (100/200) vs base 0.900 (180/200), recovery 0.556 < min 0.750" in text
    assert "short answer: accuracy 0.500 (100/200)" in text
    assert "80 items lost, 0 gained; lost e.g. q100 '0', q101 '0'" in text  # the choice it picked instead
    assert "short answer: 80 items lost, 0 gained; lost e.g. q100 'no idea'" in text
    check_task_accuracy(variant="v", baseline="base", verdicts=task_verdicts(base, base, ITEMS), items=ITEMS,
                        mine=base, base=base, thresholds=_floors(tmp_path))  # fmt: skip  # same answers pass


def test_new_floor_keys_validate_like_the_old_ones(tmp_path: Path) -> None:
    th = _floors(tmp_path, "[defaults]\nmax_mean_kl = 0.3\nmin_task_recovery = 0.9\n")
    assert th.floors.max_mean_kl == 0.3 and th.source("max_mean_kl") == "thresholds.toml [defaults]"
    with pytest.raises(Exception, match="max_p99_kl"):
        _floors(tmp_path, "[defaults]\nmax_p99_kl = -1\n")
    with pytest.raises(Exception, match="max_mean_k"):
        _floors(tmp_path, "[defaults]\nmax_mean_k = 0.3\n")  # a typo is an error, not a silent default


def _quality() -> tuple[Quality, Quality]:
    ref = Reference(("hello",), (ScoreRequest((1, 2), (3, 4)),),
                    ((TokenLogprobs(3, -0.1, {3: -0.1, 5: -2.5}), TokenLogprobs(4, -0.2, {4: -0.2})),))  # fmt: skip
    base = Quality(references={"gate": ref}, tasks=_tasks([True] * 150 + [False] * 50), seconds=1.0)
    flip = Divergence(1, 4, 9, False, True)
    variant = Quality(fidelity={"gate": [_prompt("hello", [0.02, 0.4], [True, False], flip)]},
                      tasks=_tasks([True] * 135 + [False] * 65), seconds=2.0)  # fmt: skip
    return base, variant


def _run(name: str, quality: Quality) -> ModelRun:
    gens = [Generation("hello", "Hi!", 5, 2, "stop", (1, 2), (3, 4))]
    return ModelRun(
        name=name, model_dir=f"/m/{name}", load_seconds=1.0, engine={"engine": "vllm", "dtype": "float32"},
        result=BatchResult(gens, 0.5), timing=Timing(runs=[0.5], output_tokens=2), quality=quality,
    )  # fmt: skip


def test_quality_survives_the_trip_through_json_as_the_xdist_baseline_file_needs() -> None:
    base, variant = _quality()
    for run in (_run("base", base), _run("v", variant)):
        again = run_from_dict(json.loads(json.dumps(run_to_dict(run))))
        assert again == run


def test_reports_carry_fidelity_and_task_fields_and_a_second_plot(tmp_path: Path) -> None:
    base, variant = _quality()
    settings = Settings(engine="vllm", dtype=None, warmup=0, repeats=1, tensor_parallel_size=1)
    prompts = [Prompt("hello", "hello")]
    report = build_report(_run("base", base), [_run("v", variant)], prompts, SamplingConfig(), settings)
    v = report.models["v"]
    assert v.mean_kl == pytest.approx(0.21) and v.top1_agreement == 0.5 and v.fidelity["all"].truncated
    assert v.fidelity["gate"].first_divergences == {"hello": 1}
    assert v.task_accuracy == pytest.approx(135 / 200) and v.task_recovery == pytest.approx(135 / 150)
    assert report.models["base"].task_recovery is None and report.models["base"].tasks is not None
    table = markdown_table(report)
    assert "| mean KL | p99 KL | top-1 | task acc | recovery |" in table and "0.2100 ±" in table
    written = write_compare_reports(report, tmp_path / "r.json")
    assert written["fidelity_plot"].read_bytes()[:4] == b"\x89PNG"
    assert CompareReport.model_validate_json((tmp_path / "r.json").read_text()) == report  # readable back


class _Tokenizer:
    """Words to ids, with a merge across the boundary for 'Answer: 7' (one token for ': 7')."""

    def encode(self, text: str, *, special: bool = False) -> tuple[int, ...]:
        ids = [1] if special else []
        for word in text.replace(": 7", " :7").split(" "):
            ids.append(100 + sum(map(ord, word)) % 800)
        return tuple(ids)


def test_mc_scores_what_the_whole_text_adds_to_the_context_even_across_a_merge() -> None:
    engine = _Tokenizer()
    plain = mc_request(engine, "Question: hi\nAnswer:", "seven")  # type: ignore[arg-type]
    assert plain.context == engine.encode("Question: hi\nAnswer:", special=True) and len(plain.continuation) == 1
    merged = mc_request(engine, "Question: x\nAnswer", "7")  # type: ignore[arg-type]
    assert merged.context[0] == 1 and merged.continuation  # scored from where the two tokenizations agree
    assert (*merged.context, *merged.continuation) == engine.encode("Question: x\nAnswer 7", special=True)


def test_the_shipped_task_set_is_large_bilingual_and_checkable() -> None:
    items = load_tasks()
    assert len(items) >= 200 and {i.lang for i in items} == {"en", "ko"}
    assert all(i.choices[i.answer_index] == i.answers[0] for i in items)
    assert sum(i.lang == "ko" for i in items) >= 60 and not math.isnan(len(items))


def test_variants_skip_a_format_the_baseline_cannot_support() -> None:
    from compress.core.accuracy import supports_recovery

    # SmolLM2-135M on the 254 items: multiple choice 117 right (judged), short answers 30 right (+-0.17: not)
    assert supports_recovery([True] * 117 + [False] * 137, 0.25)
    assert not supports_recovery([True] * 30 + [False] * 224, 0.0)
    assert not supports_recovery([i % 4 == 0 for i in range(254)], 0.25)  # guessing


def test_scored_prompts_and_tasks_are_kept_apart_from_what_variants_learn_from() -> None:
    """The fidelity set, the held-out set and the task set share no text (not even a near copy: rapidfuzz ratio
    75 or more) with the distillation and calibration prompts or the tiny model's training corpus, nor with each
    other; otherwise the gate would measure memorisation."""
    import tomllib

    from rapidfuzz import fuzz

    from compress.core.prompts import default_fidelity_prompts_file, heldout_prompts_file, load_prompts

    data = REPO / "compress" / "data"
    learned = [p.text for p in load_prompts(data / "distill_prompts.toml")]
    learned += [p.text for p in load_prompts(data / "tiny_exaone4_prompts.toml")]
    corpus = tomllib.loads((data / "tiny_exaone4_corpus.toml").read_text(encoding="utf-8"))
    learned += [e["text"] for key in ("answer", "text") for e in corpus.get(key, [])]
    scored = {
        "gate": [p.text for p in load_prompts()],
        "fidelity": [p.text for p in load_prompts(default_fidelity_prompts_file())],
        "heldout": [p.text for p in load_prompts(heldout_prompts_file())],
        "tasks": [i.question for i in load_tasks()],
    }
    assert len(scored["fidelity"]) >= 100 and len(scored["heldout"]) >= 30
    close = [
        (name, s, t)
        for name, texts in scored.items()
        if name != "gate"  # the gate's own prompts are checked against the training set elsewhere (test_distill)
        for s in texts
        for t in learned
        if fuzz.ratio(s, t) >= 75
    ]
    names = list(scored)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            close += [(f"{a}~{b}", s, t) for s in scored[a] for t in scored[b] if fuzz.ratio(s, t) >= 75]
    assert not close, close[:5]
