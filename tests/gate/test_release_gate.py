"""The release gate: every variant in --gate-models-dir against the baseline, on the fixed prompts.

    pytest tests/gate/test_release_gate.py --gate-models-dir $EXAONE_COMPRESSION_HOME/models/tiny-exaone4
    pytest tests/gate/test_release_gate.py -m gpu --gate-models-dir=/models/exaone-4.0-1.2b   # a GPU runner: + speed
    pytest tests/gate --gate-models-dir ... --snapshot-update         # after an intended change: rewrite golden/

Cases read the session's cached runs (compress/gate/session.py); none loads a model itself. Floors come from
tests/gate/thresholds.toml, goldens from golden/<gate>/<variant>.<engine>-<dtype>.json.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from compress.core.prompts import Prompt
from compress.evaluation.quality import Quality
from compress.evaluation.run import ModelRun
from compress.gate import cases
from compress.gate.checks import (
    GateFailure,
    check_fidelity,
    check_non_empty,
    check_similarity,
    check_speedup,
    check_task_accuracy,
    check_variant_metrics,
    task_verdicts,
)
from compress.gate.session import GateSession
from compress.gate.snapshot import (
    LOOSE_DTYPES,
    PREDATES_PROVENANCE,
    GoldenProvenanceWarning,
    answer_drift,
    folder_changed,
    folder_of,
    golden_key,
    golden_problem,
    golden_record,
)
from compress.gate.thresholds import VariantThresholds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    cases.parametrize(metafunc)


@contextmanager
def verdict() -> Iterator[None]:
    """A missed floor is reported as its message alone (no traceback into the helpers)."""
    message = None
    try:
        yield
    except GateFailure as failure:
        message = str(failure)
    if message is not None:  # "from None": no "during handling of the above exception" repeat
        raise pytest.fail.Exception(message, pytrace=False) from None


def _usable(run: ModelRun, role: str) -> ModelRun:
    if not run.ok or run.result is None:
        pytest.fail(f"{role} {run.name} could not run: {run.error}", pytrace=False)
    return run


@pytest.fixture
def variant_run(gate_session: GateSession, variant: str) -> ModelRun:
    """The variant's answers (loaded on first use); a variant that cannot load errors its cases."""
    return _usable(gate_session.run(variant), "variant")


@pytest.fixture
def baseline_run(gate_session: GateSession) -> ModelRun:
    return _usable(gate_session.baseline(), "baseline")


@pytest.fixture
def thresholds(gate_session: GateSession, variant: str) -> VariantThresholds:
    setup = gate_session.setup
    assert setup.thresholds is not None
    return setup.thresholds.for_variant(gate_session.config.name, variant)


def _answer_index(gate_session: GateSession, prompt: Prompt) -> int:
    return gate_session.prompts.index(prompt)


@pytest.mark.gate(baseline=True)
def test_non_empty(gate_session: GateSession, variant: str, prompt: Prompt, variant_run: ModelRun) -> None:
    """Every prompt gets a visible answer through the chat template."""
    assert variant_run.result is not None
    answer = variant_run.result.generations[_answer_index(gate_session, prompt)]
    base = gate_session.baseline()
    base_text = base.texts[_answer_index(gate_session, prompt)] if base.ok and base.result else None
    with verdict():
        check_non_empty(
            variant=variant,
            baseline=gate_session.config.baseline,
            prompt=prompt,
            answer=answer,
            baseline_answer=base_text,
        )


@pytest.mark.gate
def test_similarity(
    gate_session: GateSession,
    variant: str,
    prompt: Prompt,
    variant_run: ModelRun,
    baseline_run: ModelRun,
    thresholds: VariantThresholds,
) -> None:
    """Each answer is at least min_similarity like the baseline's (rapidfuzz ratio, 0-1), where a floor is set."""
    if thresholds.floors.min_similarity <= 0.0:
        pytest.skip(f"no similarity floor for {variant}: report only (README: quality verdicts)")
    i = _answer_index(gate_session, prompt)
    with verdict():
        check_similarity(
            variant=variant,
            baseline=baseline_run.name,
            prompt=prompt,
            answer=variant_run.texts[i],
            baseline_answer=baseline_run.texts[i],
            similarity=gate_session.comparison(variant).similarities[i],
            thresholds=thresholds,
        )


@pytest.mark.gate
def test_variant_metrics(
    gate_session: GateSession,
    variant: str,
    variant_run: ModelRun,
    baseline_run: ModelRun,
    thresholds: VariantThresholds,
) -> None:
    """Non-empty rate, average similarity and exact-match rate over all prompts, against their floors."""
    with verdict():
        check_variant_metrics(
            variant=variant,
            baseline=baseline_run.name,
            prompt_ids=[p.id for p in gate_session.prompts],
            comparison=gate_session.comparison(variant),
            thresholds=thresholds,
        )


def _quality(run: ModelRun, role: str) -> Quality:
    quality = run.quality
    if quality is None or quality.error:
        pytest.fail(f"{role} {run.name}: quality not measured: {quality.error if quality else 'no measurement'}",
                    pytrace=False)  # fmt: skip
    return quality


@pytest.mark.gate(measures="fidelity")
def test_fidelity(
    gate_session: GateSession,
    variant: str,
    variant_run: ModelRun,
    baseline_run: ModelRun,
    thresholds: VariantThresholds,
) -> None:
    """Teacher-forced: the baseline's greedy answers to the gate's and the fidelity prompts, scored under the
    variant. Mean and p99 KL(base || variant) per answer token at most their floors, top-1 agreement at least."""
    _quality(baseline_run, "baseline")
    quality = _quality(variant_run, "variant")
    with verdict():
        check_fidelity(
            variant=variant,
            baseline=baseline_run.name,
            prompts=[p for scored in quality.fidelity.values() for p in scored],
            thresholds=thresholds,
            decode=gate_session.decode,
            top_k=gate_session.quality.top_k,
        )


@pytest.mark.gate(measures="tasks")
def test_task_accuracy(
    gate_session: GateSession,
    variant: str,
    variant_run: ModelRun,
    baseline_run: ModelRun,
    thresholds: VariantThresholds,
) -> None:
    """The task set as multiple choice (log-likelihood) and as short answers: each format's accuracy recovery
    (variant / baseline) at least min_task_recovery, where the baseline is clearly above chance."""
    base, mine = _quality(baseline_run, "baseline").tasks, _quality(variant_run, "variant").tasks
    assert base is not None
    items = gate_session.quality.tasks
    verdicts = task_verdicts(base, mine or base, items)  # no variant tasks: the baseline is at chance in both
    if all(v.recovery is None for v in verdicts):
        pytest.skip("; ".join(v.note or "" for v in verdicts))
    with verdict():
        check_task_accuracy(
            variant=variant, baseline=baseline_run.name, verdicts=verdicts, items=items, mine=mine, base=base,
            thresholds=thresholds,
        )  # fmt: skip


@pytest.mark.gpu
@pytest.mark.gate(timed=True)
def test_speedup(gate_session: GateSession, variant: str, variant_run: ModelRun, thresholds: VariantThresholds) -> None:
    """Generation time only (load excluded), a fixed-length workload, rounds timed in turns with the
    baseline after a warm-up; the verdict is the median of the per-round ratios, or, when that lands near
    the floor, the mean of it and a fresh engine pair's."""
    try:
        rounds = gate_session.speed(variant, floor=thresholds.floors.speedup)
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    with verdict():
        check_speedup(variant=variant, baseline=gate_session.config.baseline, rounds=rounds, thresholds=thresholds)


@pytest.mark.gate(baseline=True)
def test_golden(
    gate_session: GateSession,
    variant: str,
    variant_run: ModelRun,
    baseline_run: ModelRun,
    golden: SnapshotAssertion,
    request: pytest.FixtureRequest,
) -> None:
    """Answers and rounded metrics equal the golden file, recorded from the same weights; only
    --snapshot-update changes it."""
    cfg = gate_session.config
    comparison = gate_session.comparison(variant) if variant != cfg.baseline else None
    record = golden_record(
        gate=cfg.name,
        run=variant_run,
        prompts=gate_session.prompts,
        baseline=cfg.baseline,
        comparison=comparison,
    )
    key = golden_key(variant_run)
    path = golden.extension.get_location(test_location=golden.test_location, index=key)
    option = request.config.option
    updating = option.update_snapshots or option.update_new_snapshots_only
    problem = golden_problem(Path(path), variant=variant, key=key, updating=updating)
    if problem:
        pytest.fail(problem, pytrace=False)
    expected = None if updating else json.loads(Path(path).read_text(encoding="utf-8"))
    received = json.loads(json.dumps(record))
    if expected is not None:
        changed = folder_changed(expected, received, variant=variant, key=key, path=Path(path))
        if changed:
            pytest.fail(changed, pytrace=False)
        if folder_of(expected) is None:
            warnings.warn(GoldenProvenanceWarning(PREDATES_PROVENANCE), stacklevel=1)
    if expected is not None and record["dtype"] in LOOSE_DTYPES:  # 16-bit text moves a little between runs
        drift = answer_drift(expected, received)
        if drift:
            pytest.fail(
                f"{variant} ({key}) vs {path}: {drift}. Fix: if the change is intended, rerun with "
                "--snapshot-update, review `git diff golden/` and commit",
                pytrace=False,
            )
    assert golden(name=key) == record
