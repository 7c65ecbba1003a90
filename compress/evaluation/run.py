"""Run one model over the prompts: load once, warm up, time repeated batches, close. Failures become data."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.core.errors import CompressError
from compress.engines import BatchResult, Generation, SamplingConfig, open_engine
from compress.engines.base import Engine
from compress.evaluation.quality import Quality
from compress.evaluation.speed import SpeedRounds
from compress.evaluation.timing import Timing, measure
from compress.folders.provenance import folder_provenance

log = logging.getLogger(__name__)


@dataclass
class ModelRun:
    """What one model did: outputs, timings, engine, or why it failed."""

    name: str
    model_dir: str
    status: str = "ok"
    error: str | None = None
    load_seconds: float | None = None
    result: BatchResult | None = None
    timing: Timing | None = None
    engine: dict = field(default_factory=dict)
    speed: Any = None
    """The release gate's speed rounds (compress.evaluation.speed): paired with the baseline's when both
    engines were resident, else this model's own rounds, paired later."""
    quality: Quality | None = None
    """Fidelity to the baseline and task accuracy, when they were measured (compress.evaluation.quality)."""
    provenance: dict | None = None
    """The folder's weights hash and build record (compress.folders.provenance.FolderProvenance.to_dict);
    None when the folder could not be read."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def texts(self) -> list[str]:
        return self.result.texts if self.result else []


def run_model(
    name: str,
    model_dir: str | Path,
    prompts: list[str],
    sampling: SamplingConfig,
    *,
    engine: str = "auto",
    dtype: str | None = None,
    warmup: int = 1,
    repeats: int = 3,
    tensor_parallel_size: int = 1,
    trust_remote_code: bool = False,
    catch: bool = True,
    while_loaded: Callable[[Engine, ModelRun], None] | None = None,
    **engine_kwargs: object,
) -> ModelRun:
    """Load ``model_dir`` once and measure it. With ``catch``, a model that fails to load or crashes is
    returned as ``status="failed"`` with the error, so the caller can go on with the other models.

    ``while_loaded(engine, run)`` runs after the answers, before the engine closes (the gate's speed
    rounds), so a model is never loaded twice. ``engine_kwargs`` go to vLLM (e.g. gpu_memory_utilization)."""
    run = ModelRun(name=name, model_dir=str(model_dir), provenance=provenance_of(model_dir))
    try:
        with open_engine(
            model_dir,
            engine=engine,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            trust_remote_code=trust_remote_code,
            **engine_kwargs,
        ) as eng:
            run.load_seconds = eng.load_seconds
            run.engine = eng.describe()
            run.result, run.timing = measure(eng, prompts, sampling, warmup=warmup, repeats=repeats)
            if while_loaded is not None:
                while_loaded(eng, run)
    except Exception as exc:
        if not catch:
            raise
        run.status = "failed"
        message = str(exc) if isinstance(exc, CompressError) else f"{type(exc).__name__}: {exc}"
        run.error = " ".join(message.split())  # one line: vLLM's validation errors span many
        log.error("model %s failed: %s", name, run.error)
        log.debug("%s", traceback.format_exc())
    return run


def provenance_of(model_dir: str | Path) -> dict | None:
    """:func:`compress.folders.provenance.folder_provenance` as data, logging the one-line warning of a folder
    without a manifest; None (never an error) when the folder cannot be read: the load reports that."""
    try:
        found = folder_provenance(model_dir)
    except OSError as exc:
        log.warning("%s: provenance not recorded: %s", model_dir, exc)
        return None
    if found is None:
        return None
    if found.warning:
        log.warning("%s: %s", model_dir, found.warning)
    return found.to_dict()


def run_to_dict(run: ModelRun) -> dict:
    """A ModelRun as JSON-ready data (for the xdist baseline file and the controller's report)."""
    return {
        "name": run.name,
        "model_dir": run.model_dir,
        "status": run.status,
        "error": run.error,
        "load_seconds": run.load_seconds,
        "engine": run.engine,
        "result": None
        if run.result is None
        else {
            "generations": [asdict(g) for g in run.result.generations],
            "seconds": run.result.seconds,
            "metadata": run.result.metadata,
        },
        "timing": None if run.timing is None else {"runs": run.timing.runs, "output_tokens": run.timing.output_tokens},
        "speed": run.speed.to_dict() if isinstance(run.speed, SpeedRounds) else run.speed,
        "quality": None if run.quality is None else run.quality.to_dict(),
        "provenance": run.provenance,
    }


def run_from_dict(data: dict) -> ModelRun:
    result = data.get("result")
    timing = data.get("timing")
    speed = data.get("speed")
    return ModelRun(
        name=data["name"],
        model_dir=data["model_dir"],
        status=data["status"],
        error=data.get("error"),
        load_seconds=data.get("load_seconds"),
        engine=data.get("engine") or {},
        result=None
        if result is None
        else BatchResult(
            generations=[_generation(g) for g in result["generations"]],
            seconds=result["seconds"],
            metadata=result.get("metadata") or {},
        ),
        timing=None if timing is None else Timing(runs=list(timing["runs"]), output_tokens=timing["output_tokens"]),
        speed=SpeedRounds.from_dict(speed) if isinstance(speed, dict) else speed,
        quality=Quality.from_dict(data["quality"]) if data.get("quality") else None,
        provenance=data.get("provenance"),
    )


def _generation(data: dict) -> Generation:
    ids = {k: tuple(data.get(k) or ()) for k in ("prompt_token_ids", "token_ids")}
    return Generation(**{**data, **ids})
