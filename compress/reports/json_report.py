"""The JSON reports of ``verify`` and ``eval-compare``: their schema, and writing them whole or not at all.

The schema is pydantic models with ``extra="forbid"``, so a report this code writes is a report it can read
back (``CompareReport.model_validate_json``), and a misspelt field fails at once instead of reaching users.
Field names from the old ``08_eval_compare.py`` report (``elapsed``, ``speedup``, ``avg_similarity``,
``exact_match``, ``non_empty_count``, ``non_empty_rate``, ``outputs``) keep their names and meanings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from compress.core.atomicio import atomic_file
from compress.core.provenance import host

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class HostInfo(_Strict):
    """The machine that measured: timings only compare within one host."""

    hostname: str
    platform: str
    machine: str
    python: str
    cpu_count: int | None


class SamplingInfo(_Strict):
    temperature: float
    min_tokens: int
    max_tokens: int
    seed: int
    ignore_eos: bool


class EngineInfo(_Strict):
    """What generated the text: timings from different engines, devices or dtypes are not comparable."""

    engine: str | None = None
    dtype: str | None = None
    device: str | None = None
    versions: dict[str, str] = {}


class FolderInfo(_Strict):
    """Which weights a model's figures come from (compress.folders.provenance.FolderProvenance): what a
    golden or a later report is checked against. The engine, dtype, versions and GPU are in ``engine``."""

    weights_sha256: str | None
    weights_bytes: int | None = None
    manifest: bool = False
    """False: the folder has no manifest.json (built elsewhere); only its weights hash identifies it."""
    fingerprint: str | None = None
    matrix: str | None = None
    variant: str | None = None
    recipe: str | None = None
    profile: str | None = None
    base: str | None = None
    lineage: list[dict] = []
    """Every build step from the base to this folder, with its parameters."""
    same_as_base: bool = False
    """Its build found the base's weights (teacher = student): its figures are the baseline's own."""


class CaseVerdicts(_Strict):
    """How a variant's release-gate cases ended (gate reports only: eval-compare has no floors)."""

    passed: int = 0
    skipped: int = 0
    """Cases that did not judge: report-only similarity, a task format at chance, speed without CUDA."""
    failed: list[str] = []
    """Cases that failed or errored, by id (``test_fidelity[l29]``)."""
    speed: Literal["passed", "failed", "skipped", "not run"] = "not run"
    """The speed case: only ``passed`` or ``failed`` mean the variant was timed (on CUDA, or with
    --gate-speed-on-cpu)."""


class RankedVariant(_Strict):
    """One candidate in the ranking behind :class:`Recommendation`."""

    name: str
    eligible: bool
    """Every one of its gate cases that ran passed or skipped (none failed or errored), one at least passed."""
    why_not: str | None = None
    cases_passed: int = 0
    """How many of its gate cases passed (a run that selected few cases judged it on those only)."""
    speedup: float | None = None
    """Median per-round ratio of the speed case; None: not timed."""
    weights_bytes: int | None = None
    mean_kl: float | None = None
    top1_agreement: float | None = None
    task_recovery: float | None = None


class Recommendation(_Strict):
    """The variant to ship (compress.reports.ranking says the rule): the fastest variant that passed every
    case, where speed was timed; else the smallest one, with speed said to be unmeasured."""

    variant: str | None
    """None: no variant passed."""
    rule: Literal["fastest", "smallest"]
    line: str
    """The recommendation as one line (the terminal summary prints it)."""
    ranking: list[RankedVariant]
    """Every candidate, the recommended one first, then the other eligible ones, then the rest."""


class TimingInfo(_Strict):
    """Wall time of ``repeats`` timed batches after ``warmup`` untimed ones (load time excluded)."""

    runs: list[float]
    median: float
    best: float
    spread: float
    """(max - min) / median of ``runs``."""
    warmup: int
    repeats: int
    output_tokens: int
    tokens_per_second: float


class PromptInfo(_Strict):
    id: str
    text: str
    lang: str


class OutputRecord(_Strict):
    """One prompt's answer, compared with the baseline's answer to it (None when the baseline failed)."""

    id: str
    prompt: str
    output: str
    similarity: float | None
    exact: bool | None
    non_empty: bool
    output_tokens: int
    prompt_tokens: int
    finish_reason: str | None


class FidelityInfo(_Strict):
    """Teacher-forced KL(base || variant) per answer token over one prompt set (compress.core.fidelity)."""

    n_prompts: int
    n_tokens: int
    mean_kl: float
    mean_kl_se: float
    """Standard error of mean_kl, clustered by prompt."""
    median_kl: float
    p90_kl: float
    p99_kl: float
    max_kl: float
    top1_agreement: float
    top1_agreement_se: float
    truncated: bool
    """True: computed from the top-k of each side (a lower bound on the full-vocabulary KL)."""
    worst: list[tuple[str, float]]
    """Up to five prompts with the highest mean KL."""
    first_divergences: dict[str, int | None] = {}
    """Per prompt id: the answer token where the greedy choices first differ (None: never)."""


class TaskInfo(_Strict):
    """The task set (compress/data/tasks/): accuracy per scoring format, and recovery against the baseline."""

    n_items: int
    mc_accuracy: float | None
    """None: not measured (a variant, where the baseline's multiple choice could not support a recovery)."""
    mc_accuracy_se: float | None
    short_accuracy: float | None = None
    """None: not measured (a variant, where the baseline's short answers could not support a recovery)."""
    short_accuracy_se: float | None = None
    mc_recovery: float | None = None
    mc_recovery_se: float | None = None
    short_recovery: float | None = None
    short_recovery_se: float | None = None
    chance: float
    """What guessing scores on the multiple choice."""


class ModelReport(_Strict):
    """One model of an eval-compare run. Figures are None when the model (or, for comparisons, the baseline)
    failed. ``speedup`` is baseline elapsed / this model's elapsed; ``token_speedup`` the ratio of output
    tokens per second; ``comparable`` is False when this model ran on another engine, device or dtype than
    the baseline, so its speedups are not a compression speedup."""

    name: str
    model_dir: str
    role: Literal["baseline", "candidate"]
    status: Literal["ok", "failed"]
    error: str | None = None
    load_seconds: float | None = None
    elapsed: float | None = None
    speedup: float | None = None
    token_speedup: float | None = None
    comparable: bool | None = None
    avg_similarity: float | None = None
    exact_match: float | None = None
    non_empty_count: int | None = None
    non_empty_rate: float | None = None
    output_tokens: int | None = None
    tokens_per_second: float | None = None
    deterministic: bool | None = None
    mean_kl: float | None = None
    """Teacher-forced mean KL to the baseline over every fidelity set together (see ``fidelity``)."""
    p99_kl: float | None = None
    top1_agreement: float | None = None
    task_accuracy: float | None = None
    """Multiple-choice accuracy on the task set (see ``tasks`` for short answers and recovery)."""
    task_recovery: float | None = None
    fidelity: dict[str, FidelityInfo] = {}
    """Per fidelity set ("all" = every set pooled, what the gate judges)."""
    tasks: TaskInfo | None = None
    quality_seconds: float | None = None
    """Time the fidelity and task measurements took (never in a speed figure)."""
    timing: TimingInfo | None = None
    engine: EngineInfo = Field(default_factory=EngineInfo)
    provenance: FolderInfo | None = None
    """The folder's weights hash and build record; None when the folder could not be read."""
    verdict: CaseVerdicts | None = None
    """The gate's case outcomes for this model (gate reports only)."""
    outputs: list[OutputRecord] = []


class Settings(_Strict):
    """What the user asked for (``engine="auto"`` may pick a different engine per model: see each model)."""

    engine: str
    dtype: str | None
    warmup: int
    repeats: int
    tensor_parallel_size: int


class MergedSource(_Strict):
    """One of the reports a merged report was made of (``python -m compress report merge``)."""

    file: str
    created: str
    host: HostInfo
    variants: list[str]
    """The candidates this report contributed; their speedups were timed against the baseline on its host."""


class CompareReport(_Strict):
    kind: Literal["eval-compare"] = "eval-compare"
    schema_version: int = SCHEMA_VERSION
    created: str
    baseline: str
    prompts: list[PromptInfo]
    sampling: SamplingInfo
    settings: Settings
    host: HostInfo
    models: dict[str, ModelReport]
    """Keyed by model name; the baseline first, then the candidates in the order they ran."""
    recommendation: Recommendation | None = None
    """The variant to ship (gate reports: they hold the verdicts it needs)."""
    merged_from: list[MergedSource] = []
    """Set by ``report merge``: the runners' reports this one joins (``host`` is then the first one's)."""


class VerifyReport(_Strict):
    """One prompt through one model's chat template. ``status`` is ``empty`` when the answer has no visible
    character (the command then exits 1), ``failed`` when the model did not load or crashed."""

    kind: Literal["verify"] = "verify"
    schema_version: int = SCHEMA_VERSION
    created: str
    status: Literal["ok", "empty", "failed"]
    error: str | None = None
    model_dir: str
    prompt: str
    output: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    load_seconds: float | None = None
    generation_seconds: float | None = None
    tokens_per_second: float | None = None
    timing: TimingInfo | None = None
    sampling: SamplingInfo
    engine: EngineInfo = Field(default_factory=EngineInfo)
    provenance: FolderInfo | None = None
    host: HostInfo


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def host_info() -> HostInfo:
    return HostInfo(**host())


def write_json(report: BaseModel, path: str | Path) -> Path:
    """Write a report as indented JSON (atomically)."""
    with atomic_file(path) as handle:
        handle.write(report.model_dump_json(indent=2) + "\n")
    return Path(path)
