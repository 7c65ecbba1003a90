"""The gate's session cache: each variant is loaded once, all prompts in one batch, and tests read the result.

``run_model`` loads a folder, generates (warm-up + timed repeats) and frees the engine before returning, so
one engine is alive at a time and the cache holds plain data only. Under pytest-xdist every worker needs the
baseline's answers: the first worker to ask generates them and leaves them in the session's shared temp folder
(behind a file lock, the pattern from the pytest-xdist docs); the others read that file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from compress.engines import BatchResult, Generation
from compress.evaluation.run import ModelRun, run_model
from compress.evaluation.timing import Timing
from compress.gate.options import GateSetup
from compress.metrics import OutputComparison, compare_outputs

log = logging.getLogger(__name__)


class GateSession:
    """Runs and caches the variants of one gate. ``shared_dir`` is set under xdist (see module docstring)."""

    def __init__(
        self, setup: GateSetup, *, measure_speed: bool, shared_dir: Path | None = None, worker: str = "main"
    ) -> None:
        if not setup.ready or setup.config is None:
            raise ValueError(f"gate is not ready: {setup.problem or 'no --models-dir'}")
        self.setup = setup
        self.config = setup.config
        self.prompts = setup.prompts
        self.worker = worker
        self.shared_dir = shared_dir
        cfg = self.config
        self.warmup = cfg.warmup if cfg.warmup is not None else (1 if measure_speed else 0)
        self.repeats = cfg.repeats if cfg.repeats is not None else (3 if measure_speed else 1)
        self.runs: dict[str, ModelRun] = {}
        self.loads: list[dict] = []
        """One entry per model this process loaded: proof that no model was loaded twice."""
        self._comparisons: dict[str, OutputComparison] = {}

    def run(self, variant: str) -> ModelRun:
        """The variant's run, made on first use. Load failures come back as ``status="failed"``."""
        if variant not in self.runs:
            if variant == self.config.baseline and self.shared_dir is not None:
                self.runs[variant] = self._shared_baseline()
            else:
                self.runs[variant] = self._generate(variant)
        return self.runs[variant]

    def baseline(self) -> ModelRun:
        return self.run(self.config.baseline)

    def comparison(self, variant: str) -> OutputComparison:
        """The variant's answers against the baseline's; both runs must be ok."""
        if variant not in self._comparisons:
            self._comparisons[variant] = compare_outputs(self.baseline().texts, self.run(variant).texts)
        return self._comparisons[variant]

    def _generate(self, variant: str) -> ModelRun:
        cfg = self.config
        log.info("gate %s: loading %s (%s)", cfg.name, variant, cfg.folder(variant))
        run = run_model(
            variant,
            cfg.folder(variant),
            [p.text for p in self.prompts],
            cfg.sampling,
            engine=cfg.engine,
            dtype=cfg.dtype,
            warmup=self.warmup,
            repeats=self.repeats,
            tensor_parallel_size=cfg.tensor_parallel_size,
            trust_remote_code=cfg.trust_remote_code,
        )
        self.loads.append({"variant": variant, "worker": self.worker, "pid": os.getpid(), "status": run.status})
        return run

    def _shared_baseline(self) -> ModelRun:
        from filelock import FileLock

        assert self.shared_dir is not None
        cache = self.shared_dir / f"gate-baseline-{self._cache_key()}.json"
        with FileLock(str(cache) + ".lock"):
            if cache.is_file():
                log.info("gate %s: baseline answers from %s", self.config.name, cache)
                return run_from_dict(json.loads(cache.read_text(encoding="utf-8")))
            run = self._generate(self.config.baseline)
            _write_atomic(cache, json.dumps(run_to_dict(run)))
            return run

    def _cache_key(self) -> str:
        """Everything that decides the baseline's answers and timings: another gate in the same session
        (another models dir, prompts, engine) must not read this one's file."""
        cfg = self.config
        parts = [
            str(cfg.folder(cfg.baseline)),
            cfg.engine,
            str(cfg.dtype),
            str(cfg.tensor_parallel_size),
            str(self.warmup),
            str(self.repeats),
            json.dumps(asdict(cfg.sampling), sort_keys=True),
            json.dumps([asdict(p) for p in self.prompts]),
        ]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


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
    }


def run_from_dict(data: dict) -> ModelRun:
    result = data.get("result")
    timing = data.get("timing")
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
            generations=[Generation(**g) for g in result["generations"]],
            seconds=result["seconds"],
            metadata=result.get("metadata") or {},
        ),
        timing=None if timing is None else Timing(runs=list(timing["runs"]), output_tokens=timing["output_tokens"]),
    )


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def visible_gpu_count() -> int:
    """GPUs this host exposes, counted from /dev without initialising CUDA (that would fix the devices)."""
    return len([p for p in Path("/dev").glob("nvidia[0-9]*") if p.name[6:].isdigit()])


def pin_worker_gpus(worker_id: str | None, tensor_parallel_size: int = 1) -> str | None:
    """Give xdist worker ``gwN`` its own GPU(s) (``CUDA_VISIBLE_DEVICES``) before anything touches CUDA.

    Leaves a user's own ``CUDA_VISIBLE_DEVICES`` alone and does nothing on hosts without GPUs or outside
    xdist. Workers beyond the GPU count wrap around (run ``-n`` at most GPUs / tensor-parallel size).
    Returns the value set, or None.
    """
    if not worker_id or not worker_id.startswith("gw") or "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    count = visible_gpu_count()
    if count == 0:
        return None
    first = int(worker_id[2:]) * tensor_parallel_size
    devices = ",".join(str((first + i) % count) for i in range(tensor_parallel_size))
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    return devices


def share_cpu_threads(worker_count: int) -> str | None:
    """On a host without GPUs, give each of ``worker_count`` xdist workers its share of the cores
    (``OMP_NUM_THREADS``), unless the user set it. Oversubscribed OpenMP threads spin-wait on each other:
    with 2 threads per process on 2 busy cores a tiny-exaone4 batch took 40 s here, with 1 thread 1.3 s."""
    if worker_count < 1 or "OMP_NUM_THREADS" in os.environ or visible_gpu_count() > 0:
        return None
    threads = str(max(1, (os.cpu_count() or 1) // worker_count))
    os.environ["OMP_NUM_THREADS"] = threads
    return threads
