"""The gate's settings, resolved once per pytest session from the command line.

A problem with what the options point at (no such models folder, unknown variant, malformed prompts or
thresholds file) does not stop the session: it is kept as ``GateSetup.problem`` and every gate case reports
it as an error, so a CI log shows the one-line message and the fix instead of a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from compress.engines import SamplingConfig
from compress.errors import CompressError
from compress.gate.thresholds import Thresholds, load_thresholds
from compress.prompts import Prompt, load_prompts
from compress.reports.json_report import check_report_path

ENGINES = ("auto", "vllm", "hf")
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_BASELINE = "base"
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
    thresholds: Thresholds | None = None
    problem: str | None = None

    @property
    def ready(self) -> bool:
        return self.config is not None and self.problem is None


def split_list(value: str | None) -> list[str]:
    """``a,b , c`` -> [a, b, c]; None or blank -> []."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def is_leftover(folder: Path) -> bool:
    """A builder's temp or backup folder (written beside the target, renamed at the end), not a variant."""
    name = folder.name
    return name.startswith(".") or ".tmp-" in name or ".old-" in name


def list_variants(models_dir: Path, baseline: str) -> list[str]:
    """Every variant folder except the baseline, sorted. Folders without config.json are kept: a broken
    variant must fail the gate, not vanish from it."""
    return sorted(p.name for p in models_dir.iterdir() if p.is_dir() and not is_leftover(p) and p.name != baseline)


def default_report_file(rootdir: Path, name: str) -> Path:
    return rootdir / DEFAULT_REPORT_DIR / f"{name}.json"


def junit_file_for(report_file: Path) -> Path:
    """reports/gate/tiny-exaone4.json -> reports/gate/tiny-exaone4-junit.xml"""
    return report_file.with_name(f"{report_file.stem}-junit.xml")


def resolve_gate(
    *,
    models_dir: str | None,
    rootdir: Path,
    baseline: str = DEFAULT_BASELINE,
    variants: str | None = None,
    name: str | None = None,
    engine: str = "auto",
    dtype: str | None = None,
    tensor_parallel_size: int = 1,
    trust_remote_code: bool = False,
    thresholds_file: str | None = None,
    golden_dir: str | None = None,
    report_file: str | None = None,
    prompts_file: str | None = None,
    speed_on_cpu: bool = False,
    warmup: int | None = None,
    repeats: int | None = None,
    speed_batch: int | None = None,
    gpu_memory_utilization: float | None = None,
) -> GateSetup:
    """Build the gate from option values. ``models_dir=None`` means no gate was asked for."""
    if not models_dir:
        return GateSetup(config=None)
    folder = Path(models_dir).expanduser().resolve()
    gate_name = name or folder.name
    config = GateConfig(
        models_dir=folder,
        name=gate_name,
        baseline=baseline,
        variants=(),
        engine=engine,
        dtype=dtype,
        tensor_parallel_size=tensor_parallel_size,
        trust_remote_code=trust_remote_code,
        thresholds_file=Path(thresholds_file) if thresholds_file else rootdir / DEFAULT_THRESHOLDS,
        golden_dir=Path(golden_dir) if golden_dir else rootdir / DEFAULT_GOLDEN_DIR,
        report_file=Path(report_file) if report_file else default_report_file(rootdir, gate_name),
        prompts_file=Path(prompts_file) if prompts_file else None,
        speed_on_cpu=speed_on_cpu,
        warmup=warmup,
        repeats=repeats,
        speed_batch=speed_batch,
        gpu_memory_utilization=gpu_memory_utilization,
    )
    try:
        if report_file:  # a folder the user named must exist; the default one is made
            check_report_path(config.report_file)
        config = _with_variants(config, split_list(variants))
        prompts = load_prompts(config.prompts_file)
        thresholds = load_thresholds(config.thresholds_file)
    except CompressError as err:
        return GateSetup(config=config, problem=str(err))
    return GateSetup(config=config, prompts=prompts, thresholds=thresholds)


def _with_variants(config: GateConfig, asked: list[str]) -> GateConfig:
    folder = config.models_dir
    if not folder.is_dir():
        raise CompressError(
            f"--models-dir {folder} does not exist",
            "pass the folder that holds the variant folders (e.g. $EXAONE_COMPRESSION_HOME/models/tiny-exaone4)",
        )
    if not (folder / config.baseline).is_dir():
        raise CompressError(
            f"baseline {config.baseline!r} has no folder in {folder}",
            f"pass --baseline with one of: {', '.join(list_variants(folder, '')) or '(no folders)'}",
        )
    found = list_variants(folder, config.baseline)
    if asked:
        unknown = [v for v in asked if v not in found and v != config.baseline]
        if unknown:
            raise CompressError(
                f"--variants names {', '.join(unknown)}, which {folder} does not hold",
                f"pick from: {', '.join(found) or '(only the baseline)'}",
            )
        found = [v for v in dict.fromkeys(asked) if v != config.baseline]
    return replace(config, variants=tuple(found))
