"""The gate's settings, resolved once per pytest session from the command line.

A problem with what the options point at (no such models folder, unknown variant, malformed prompts or
thresholds file) does not stop the session: it is kept as ``GateSetup.problem`` and every gate case reports
it as an error, so a CI log shows the one-line message and the fix instead of a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from compress.core.atomicio import check_writable_file
from compress.core.errors import CompressError
from compress.core.prompts import Prompt, default_fidelity_prompts_file, load_prompts
from compress.core.tasks import TaskItem, load_tasks
from compress.engines import SamplingConfig
from compress.folders.matrix import BASELINE, list_variants
from compress.gate.thresholds import Thresholds, load_thresholds

ENGINES = ("auto", "vllm", "hf")
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_THRESHOLDS = Path("tests/gate/thresholds.toml")
DEFAULT_GOLDEN_DIR = Path("golden")
DEFAULT_REPORT_DIR = Path("reports/gate")


@dataclass(frozen=True)
class GateConfig:
    """What one gate run checks, and where it reads and writes."""

    models_dir: Path
    """Folder holding one subfolder per variant (a built matrix, e.g. models/tiny-exaone4)."""
    name: str
    """Golden namespace and report name; default: the models folder's name."""
    baseline: str
    """The variant every other one is compared with."""
    variants: tuple[str, ...]
    """Candidates, baseline excluded, in the order they run."""
    engine: str = "auto"
    dtype: str | None = None
    """None: float32, or bfloat16 for 4-bit folders in vLLM (the engines' default)."""
    tensor_parallel_size: int = 1
    trust_remote_code: bool = False
    thresholds_file: Path = DEFAULT_THRESHOLDS
    golden_dir: Path = DEFAULT_GOLDEN_DIR
    report_file: Path = DEFAULT_REPORT_DIR / "gate.json"
    prompts_file: Path | None = None
    fidelity_prompts_file: Path | None = None
    """None: compress/data/fidelity_prompts.toml."""
    tasks_file: Path | None = None
    """None: compress/data/tasks/checkable_qa.jsonl."""
    enforce_eager: bool = False
    """vLLM in eager mode on CUDA too (the CPU always runs eager)."""
    speed_on_cpu: bool = False
    """Run the speed floors without CUDA (the gate's self-check only: shared-CPU timings are noise)."""
    warmup: int | None = None
    repeats: int | None = None
    """Speed rounds (warm-up, timed) when a speed case runs (None: 2 and 8), else batches of the answers
    (None: 0 and 1: greedy text is the same every time)."""
    speed_batch: int | None = None
    """Sequences per timed round (the prompts cycled); None: each prompt once."""
    gpu_memory_utilization: float | None = None
    """vLLM's share of a GPU per engine; None: vLLM's default, or 0.28 each when engines share it for timing."""
    baseline_cache: Path | None = None
    """Where the baseline's answers and quality references are kept between gate runs (None: only between the
    xdist workers of one run)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    @property
    def all_variants(self) -> tuple[str, ...]:
        return (self.baseline, *self.variants)

    def folder(self, variant: str) -> Path:
        return self.models_dir / variant


@dataclass(frozen=True)
class GateSetup:
    """A resolved gate: its config, prompts and thresholds, or the problem that keeps it from running."""

    config: GateConfig | None
    prompts: list[Prompt] = field(default_factory=list)
    fidelity_prompts: list[Prompt] = field(default_factory=list)
    tasks: list[TaskItem] = field(default_factory=list)
    thresholds: Thresholds | None = None
    problem: str | None = None
    allow_empty: bool = False
    """--gate-allow-empty: a run that gates nothing passes instead of erroring (see :data:`NOTHING_TO_GATE`)."""

    @property
    def ready(self) -> bool:
        return self.config is not None and self.problem is None


def split_list(value: str | None) -> list[str]:
    """``a,b , c`` -> [a, b, c]; None or blank -> []."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def default_report_file(rootdir: Path, name: str) -> Path:
    return rootdir / DEFAULT_REPORT_DIR / f"{name}.json"


def junit_file_for(report_file: Path) -> Path:
    """reports/gate/tiny-exaone4.json -> reports/gate/tiny-exaone4-junit.xml"""
    return report_file.with_name(f"{report_file.stem}-junit.xml")


@dataclass(frozen=True)
class GateOption:
    """One command-line option of the gate. The table below is the only place an option is declared: the
    pytest plugin adds each one from it, and :func:`resolve_gate` takes its values by ``dest``."""

    flag: str
    dest: str
    help: str
    default: Any = None
    metavar: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False
    """A flag without a value (store_true)."""
    old: str | None = None
    """The name it had before every gate option was prefixed ``--gate-``; still accepted, with a warning."""


OPTIONS: tuple[GateOption, ...] = (
    GateOption("--gate-models-dir", "models_dir", "folder holding one folder per variant (e.g. "
               "$EXAONE_COMPRESSION_HOME/models/tiny-exaone4); without it a run of only gate cases is an error "
               "(--gate-allow-empty), and gate cases beside other tests skip",
               metavar="DIR", old="--models-dir"),
    GateOption("--gate-baseline", "baseline", f"the variant the others are compared with (default: {BASELINE})",
               default=BASELINE, metavar="NAME", old="--baseline"),
    GateOption("--gate-variants", "variants", "comma list of variants to gate (default: every folder in "
               "--gate-models-dir but the baseline)", metavar="A,B", old="--variants"),
    GateOption("--gate-engine", "engine", "auto: vLLM, except 4-bit folders without CUDA, which go to HF "
               "(default: auto)", default="auto", choices=ENGINES),
    GateOption("--gate-dtype", "dtype", "activation dtype (default: float32; bfloat16 for 4-bit folders in vLLM)",
               choices=DTYPES),
    GateOption("--gate-tensor-parallel-size", "tensor_parallel_size", "GPUs per model for vLLM (default: 1); "
               "under xdist each worker gets N GPUs", default=1, metavar="N", type=int, old="--tensor-parallel-size"),
    GateOption("--gate-trust-remote-code", "trust_remote_code", "allow Python code from model folders "
               "(EXAONE 3.x no longer needs it); off by default", default=False, switch=True),
    GateOption("--gate-thresholds", "thresholds_file", f"per-variant floors (default: {DEFAULT_THRESHOLDS})",
               metavar="TOML"),
    GateOption("--gate-report", "report_file", "eval-compare style report of the run (default: "
               f"{DEFAULT_REPORT_DIR}/<gate name>.json); without --junitxml a JUnit XML goes beside it as "
               "<name>-junit.xml", metavar="JSON"),
    GateOption("--gate-name", "name", "golden namespace, thresholds table and report name (default: the "
               "--gate-models-dir folder's name)", metavar="NAME"),
    GateOption("--gate-golden-dir", "golden_dir", f"where golden files live (default: {DEFAULT_GOLDEN_DIR}/); "
               "change them only with --snapshot-update", metavar="DIR", old="--golden-dir"),
    GateOption("--gate-prompts-file", "prompts_file", "prompts (TOML, JSON or text; default: the fixed gate "
               "prompts)", metavar="FILE", old="--prompts-file"),
    GateOption("--gate-fidelity-prompts", "fidelity_prompts_file", "prompts whose baseline answers every variant "
               "scores teacher-forced, besides the gate's own (default: the shipped fidelity set, 122 prompts)",
               metavar="FILE"),
    GateOption("--gate-tasks-file", "tasks_file", "task items with checkable answers, JSONL (default: the shipped "
               "set, 254 items)", metavar="JSONL"),
    GateOption("--gate-repeats", "repeats", "timed speed rounds per variant, each interleaved with the baseline "
               "on CUDA (default: 8 when a speed case runs; else batches of the answers, default 1)",
               metavar="N", type=int),
    GateOption("--gate-warmup", "warmup", "untimed rounds before the timed ones (default: 2 when a speed case "
               "runs, else 0)", metavar="N", type=int),
    GateOption("--gate-speed-batch", "speed_batch", "sequences per timed round, the prompts cycled, each exactly "
               "max_tokens long (default: each prompt once); raise it where decoding at small batch is "
               "host-bound and a variant's gain cannot show", metavar="N", type=int),
    GateOption("--gate-gpu-memory-utilization", "gpu_memory_utilization", "vLLM's GPU share per engine "
               "(default: vLLM's, or 0.28 each while baselines stay loaded for timing)", metavar="F", type=float),
    GateOption("--gate-enforce-eager", "enforce_eager", "vLLM without torch.compile and CUDA graphs (an H200 "
               "engine started in 39 s instead of 62 s cold; decoding 7x slower, so never for speed floors; its "
               "goldens are -cuda-eager files)",
               default=False, switch=True),
    GateOption("--gate-allow-empty", "allow_empty", "let a run that gates nothing pass (no --gate-models-dir, or "
               "a models folder holding only the baseline); without it such a run is an error", default=False,
               switch=True),
    GateOption("--gate-baseline-cache", "baseline_cache", "keep the baseline's answers and quality references "
               "in DIR, keyed by its folder's content and everything else that decides them: gate runs over "
               "disjoint variant lists (CI jobs, lanes) then measure the baseline once", metavar="DIR"),
    GateOption("--gate-speed-on-cpu", "speed_on_cpu", "run the speed floors without CUDA (the gate's "
               "self-check only: shared-CPU timings are noise)", default=False, switch=True, old="--speed-on-cpu"),
)  # fmt: skip
OPTION_DEFAULTS = {o.dest: o.default for o in OPTIONS}
NOTHING_TO_GATE = str(
    CompressError(
        "release gate: nothing to gate: no --gate-models-dir was given, so every selected case would skip",
        "pass --gate-models-dir=DIR (the folder holding the baseline and its variants), or --gate-allow-empty "
        "to let such a run pass",
    )
)
"""The error of a run that selected only release-gate cases but named no models folder (``pytest -m gpu`` or
``pytest tests/gate/test_release_gate.py`` without ``--gate-models-dir``): an empty gate must not pass a release.
A run that also selects other tests (the repo's own ``pytest tests/unit tests/eval tests/gate``) skips the gate's
cases instead."""


def resolve_gate(*, rootdir: Path, **values: Any) -> GateSetup:
    """Build the gate from option values, keyed by :data:`OPTIONS`' ``dest`` (missing ones take the table's
    default). ``models_dir=None`` means no gate was asked for."""
    unknown = sorted(set(values) - set(OPTION_DEFAULTS))
    if unknown:
        raise TypeError(f"resolve_gate() got unknown options {unknown}")
    v = {**OPTION_DEFAULTS, **values}
    if not v["models_dir"]:
        return GateSetup(config=None, allow_empty=v["allow_empty"])
    folder = Path(v["models_dir"]).expanduser().resolve()
    gate_name = v["name"] or folder.name
    report_file = v["report_file"]
    config = GateConfig(
        models_dir=folder,
        name=gate_name,
        baseline=v["baseline"],
        variants=(),
        engine=v["engine"],
        dtype=v["dtype"],
        tensor_parallel_size=v["tensor_parallel_size"],
        trust_remote_code=v["trust_remote_code"],
        thresholds_file=Path(v["thresholds_file"]) if v["thresholds_file"] else rootdir / DEFAULT_THRESHOLDS,
        golden_dir=Path(v["golden_dir"]) if v["golden_dir"] else rootdir / DEFAULT_GOLDEN_DIR,
        report_file=Path(report_file) if report_file else default_report_file(rootdir, gate_name),
        prompts_file=Path(v["prompts_file"]) if v["prompts_file"] else None,
        fidelity_prompts_file=Path(v["fidelity_prompts_file"]) if v["fidelity_prompts_file"] else None,
        tasks_file=Path(v["tasks_file"]) if v["tasks_file"] else None,
        speed_on_cpu=v["speed_on_cpu"],
        enforce_eager=v["enforce_eager"],
        warmup=v["warmup"],
        repeats=v["repeats"],
        speed_batch=v["speed_batch"],
        gpu_memory_utilization=v["gpu_memory_utilization"],
        baseline_cache=Path(v["baseline_cache"]).expanduser().resolve() if v["baseline_cache"] else None,
    )
    variants = v["variants"]
    try:
        if report_file:  # a folder the user named must exist; the default one is made
            check_writable_file(config.report_file)
        config = _with_variants(config, split_list(variants), allow_empty=v["allow_empty"])
        prompts = load_prompts(config.prompts_file)
        fidelity_prompts = load_prompts(config.fidelity_prompts_file or default_fidelity_prompts_file())
        tasks = load_tasks(config.tasks_file)
        thresholds = load_thresholds(config.thresholds_file)
    except CompressError as err:
        return GateSetup(config=config, problem=str(err), allow_empty=v["allow_empty"])
    return GateSetup(
        config=config, prompts=prompts, fidelity_prompts=fidelity_prompts, tasks=tasks, thresholds=thresholds,
        allow_empty=v["allow_empty"],
    )  # fmt: skip


def _with_variants(config: GateConfig, asked: list[str], *, allow_empty: bool = False) -> GateConfig:
    folder = config.models_dir
    if not folder.is_dir():
        raise CompressError(
            f"--gate-models-dir {folder} does not exist",
            "pass the folder that holds the variant folders (e.g. $EXAONE_COMPRESSION_HOME/models/tiny-exaone4)",
        )
    if not (folder / config.baseline).is_dir():
        raise CompressError(
            f"baseline {config.baseline!r} has no folder in {folder}",
            f"pass --gate-baseline with one of: {', '.join(list_variants(folder, '')) or '(no folders)'}",
        )
    found = list_variants(folder, config.baseline)
    if asked:
        unknown = [v for v in asked if v not in found and v != config.baseline]
        if unknown:
            raise CompressError(
                f"--gate-variants names {', '.join(unknown)}, which {folder} does not hold",
                f"pick from: {', '.join(found) or '(only the baseline)'}",
            )
        found = [v for v in dict.fromkeys(asked) if v != config.baseline]
    if not found and not allow_empty:
        raise CompressError(
            f"release gate: nothing to gate: {folder} holds only the baseline {config.baseline!r}"
            + (" (--gate-variants named no other)" if asked else ""),
            "build the variants into it (python -m compress build RECIPE) or point --gate-models-dir at a built "
            "matrix; --gate-allow-empty runs the baseline's own cases anyway",
        )
    return replace(config, variants=tuple(found))
