"""The gate's session cache: each variant is loaded once, all prompts in one batch, and tests read the result.

``run_model`` loads a folder, generates and frees the engine before returning, so the cache holds plain data
only. Under pytest-xdist every worker needs the baseline's answers: the first worker to ask generates them and
leaves them in the session's shared temp folder (behind a file lock, the pattern from the pytest-xdist docs);
the others read that file. ``--gate-baseline-cache DIR`` keeps that file between runs: gate runs over disjoint
variant lists (CI jobs on several runners, or lanes of one CI job) measure the baseline once. Its name is a
digest of everything that decides the baseline's answers and references, the folder's content and the engine's
versions included, so a rebuilt baseline or another vLLM is measured afresh.

When speed cases run (compress/evaluation/speed.py says why they are measured this way), the baseline stays
loaded in each worker as the timing reference (on a GPU with its own share: ``gpu_memory_utilization``), and
each variant, while loaded, is timed in rounds interleaved with it, at the variant's dtype: a 4-bit variant
runs in bf16 (and, on a host without CUDA, through HF), so it is timed against the baseline loaded a second
time the same way (kept for the other 4-bit variants), never against the float32 engine that made the
baseline's answers. Under xdist that is the one model loaded once per worker rather than once per session:
a GPU's timings need a reference measured on that GPU (its answers are still made once and shared).
When workers share one GPU, engine work overlaps and speed rounds take the GPU alone (compress/gate/gpu_turns.py).

On CUDA the gate runs every folder at the serving dtype, bfloat16, unless ``--gate-dtype`` says otherwise: one
engine per variant gives its answers, quality and speed, timed against the baseline in bfloat16 (a float32
timing says nothing about what is served, and a second engine per variant would double the gate's cost:
engine start is ~95 % of a GPU gate). On a CPU float32 stays the default (portable, exact greedy text).

A speed reading near its floor is confirmed by a second, fresh pair of engines (:data:`CONFIRM_MARGIN`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict, replace
from pathlib import Path

from compress.core.atomicio import write_text_atomic
from compress.core.provenance import package_versions
from compress.core.similarity import OutputComparison, compare_outputs
from compress.engines import open_engine
from compress.engines.base import Engine
from compress.engines.select import has_cuda
from compress.evaluation.quality import Quality, QualityPlan, measure_baseline, measure_variant
from compress.evaluation.run import ModelRun, provenance_of, run_from_dict, run_model, run_to_dict
from compress.evaluation.speed import SpeedRounds, SpeedWorkload, interleaved_rounds
from compress.evaluation.timing import Timing, measure
from compress.folders.manifest import folder_digest
from compress.gate.gpu_turns import GpuTurns, NoTurns
from compress.gate.options import GateSetup

log = logging.getLogger(__name__)

SPEED_ROUNDS = 8
SPEED_WARMUP = 2
SHARED_GPU_MEMORY = 0.28
"""Each resident engine's share of a GPU when speed is timed: up to three at once (the baseline at the gate's
dtype, the baseline in bf16 for 4-bit variants, the variant); vLLM's default 0.9 fits one. A confirmation's
fresh pair gets half each, beside the resident references (vLLM refuses to start an engine whose share is more
than the GPU's free memory); the KV cache the gate's batch needs is a small part of either."""
SERVING_DTYPE = "bfloat16"
"""The gate's dtype on CUDA when ``--gate-dtype`` is not given (module docstring)."""
CONFIRM_MARGIN = 0.10
"""A speedup within this of its floor (either side) is measured again by a fresh pair of engines, and the
verdict is the mean of the two pairs' medians. Why 0.10: on the H200 a fresh pair of engines of the *same*
model read 0.899 once while rounds within one pair ranged 0.987-1.037 (README "Speed gate under noise"): a
bias of ~10 % between engine starts, which more rounds of one pair do not average out. Averaging two
independent pairs halves it, so one biased pair can no longer carry a variant across its floor."""
SHARED_KV_CACHE_BYTES = 1 << 30
"""Each engine's KV cache when xdist workers share a GPU (``kv_cache_memory_bytes``), so that vLLM skips its
memory profiling: that profiling takes every process's GPU memory for its own (vLLM 0.26,
``Worker.determine_available_memory``: "we assume that the other processes using the same GPU did not change
their memory usage during the profiling"): another worker's engine closing meanwhile trips its assertion, one
allocating shrinks or zeroes the KV cache it sizes. (A precaution from vLLM's code: the errors of the hung
``-n 4`` run of 12-01 printed no reason; with this, ``-n 2`` on the H200 ran green: 57 passed.) 1 GiB holds 16
sequences of 1024 tokens of EXAONE-4.0-1.2B in bf16 (61 KB a token), 65 of tiny
EXAONE-4 in float32 (15 KB) and 21 of SmolLM2-135M in float32 (46 KB); the gate's batches are 10."""


class GateSession:
    """Runs and caches the variants of one gate. ``shared_dir`` is set under xdist (see module docstring)."""

    def __init__(
        self,
        setup: GateSetup,
        *,
        measure_speed: bool,
        quality: QualityPlan | None = None,
        shared_dir: Path | None = None,
        worker: str = "main",
        shares_gpu: bool = False,
        turns: GpuTurns | NoTurns | None = None,
    ) -> None:
        if not setup.ready or setup.config is None:
            raise ValueError(f"gate is not ready: {setup.problem or 'no --gate-models-dir'}")
        self.setup = setup
        self.config = setup.config
        self.prompts = setup.prompts
        self.worker = worker
        self.shared_dir = shared_dir
        self.shares_gpu = shares_gpu
        """Other workers' engines start and close on this GPU meanwhile (:func:`workers_share_a_gpu`)."""
        self.turns = turns or NoTurns()
        """Engine work in shared turns, speed rounds in exclusive ones (compress/gate/gpu_turns.py)."""
        cfg = self.config
        self.dtype = gate_dtype(cfg.dtype, cuda=has_cuda())
        """The dtype every engine runs at; None: the folder's default (float32, or bf16 for 4-bit in vLLM)."""
        self.measure_speed = measure_speed
        self.quality = quality or QualityPlan(fidelity=False)
        """What quality cases need measured while each model is loaded (nothing when none is selected)."""
        if measure_speed:
            self.warmup = cfg.warmup if cfg.warmup is not None else SPEED_WARMUP
            self.repeats = cfg.repeats if cfg.repeats is not None else SPEED_ROUNDS
        else:
            self.warmup = cfg.warmup if cfg.warmup is not None else 0
            self.repeats = cfg.repeats if cfg.repeats is not None else 1
        self.workload = SpeedWorkload.for_gate([p.text for p in self.prompts], cfg.sampling, cfg.speed_batch)
        self.runs: dict[str, ModelRun] = {}
        self.loads: list[dict] = []
        """One entry per model this process loaded: proof that no model was loaded twice."""
        self._comparisons: dict[str, OutputComparison] = {}
        self._references: dict[str, Engine] = {}
        """The baseline kept loaded for timing, by engine and dtype ('default': the gate's own)."""
        self._reference_errors: dict[str, str] = {}
        self._baseline_timing: Timing | None = None
        self._tokenizer = None

    def run(self, variant: str) -> ModelRun:
        """The variant's run, made on first use. Load failures come back as ``status="failed"``."""
        if variant not in self.runs:
            if self.measure_speed and self.shared_dir is not None:
                # this worker's timing reference starts now, beside the other workers' (not after the baseline's
                # answers, which one of them makes while the rest wait on its file)
                self._reference_engine()
            if self.quality.active and variant != self.config.baseline:
                self.baseline()  # a variant is scored against the baseline's references: those come first
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

    def speed(self, variant: str, floor: float | None = None) -> SpeedRounds:
        """The variant's timed rounds, interleaved with the baseline's (only when speed cases run). With
        ``floor``, a reading within :data:`CONFIRM_MARGIN` of it gets a second pair of fresh engines first
        (``SpeedRounds.confirmation``; the verdict is then the two pairs' mean)."""
        run = self.run(variant)
        if not isinstance(run.speed, SpeedRounds):
            errors = "; ".join(self._reference_errors.values())
            raise RuntimeError(errors or f"{variant} has no speed rounds (was it loaded?)")
        if floor is not None and run.speed.confirmation is None and near_floor(run.speed.speedup, floor):
            log.info("gate %s: %s read %.2fx, near its floor %.2fx: a fresh pair of engines confirms",
                     self.config.name, variant, run.speed.speedup, floor)  # fmt: skip
            second = self._fresh_pair(variant, run)
            run.speed = replace(run.speed, confirmation=second)
        return run.speed

    def _fresh_pair(self, variant: str, run: ModelRun) -> SpeedRounds:
        """The baseline and the variant loaded afresh (neither resident engine) and timed as the first time."""
        cfg = self.config
        kwargs = self._engine_kwargs(run.engine.get("dtype"), run.engine.get("engine"))
        if cfg.gpu_memory_utilization is None and "gpu_memory_utilization" in kwargs:
            kwargs["gpu_memory_utilization"] = SHARED_GPU_MEMORY / 2
        engines: list[Engine] = []
        try:
            with self.turns.shared():
                for name in (cfg.baseline, variant):
                    engines.append(open_engine(cfg.folder(name), **kwargs))
                    self._note_load(name, "ok", engines[-1].load_seconds, confirm=True)
            with self.turns.exclusive():
                return interleaved_rounds(*engines, self.workload, rounds=self.repeats, warmup=self.warmup)
        except Exception as exc:  # the speed case reports it in one line
            message = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise RuntimeError(f"{variant}'s speed read near its floor and the fresh pair confirming it failed: "
                               f"{message}") from exc  # fmt: skip
        finally:
            with self.turns.shared():
                for engine in engines:
                    with contextlib.suppress(Exception):
                        engine.close()

    def decode(self, token_id: int) -> str:
        """A token id as text, through the baseline's tokenizer (for failure messages)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(
                str(self.config.folder(self.config.baseline)), trust_remote_code=self.config.trust_remote_code
            )
        return self._tokenizer.decode([token_id])

    def close(self) -> None:
        """Free the resident timing references (end of the session)."""
        for engine in self._references.values():
            with contextlib.suppress(Exception):
                engine.close()
        self._references.clear()

    # --- loading ---------------------------------------------------------------------------------------------

    def _engine_kwargs(self, dtype: str | None = None, engine: str | None = None) -> dict:
        cfg = self.config
        kwargs: dict = {
            "engine": engine or cfg.engine,
            "dtype": dtype or self.dtype,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "trust_remote_code": cfg.trust_remote_code,
        }
        share = cfg.gpu_memory_utilization
        if share is None and self.measure_speed:
            share = SHARED_GPU_MEMORY
        if share is not None:
            kwargs["gpu_memory_utilization"] = share
        if cfg.enforce_eager:
            kwargs["enforce_eager"] = True
        if self.shares_gpu:
            kwargs["kv_cache_memory_bytes"] = SHARED_KV_CACHE_BYTES
        return kwargs

    def _generate(self, variant: str) -> ModelRun:
        cfg = self.config
        if self.measure_speed and variant == cfg.baseline:
            return self._reference_run()
        log.info("gate %s: loading %s (%s)", cfg.name, variant, cfg.folder(variant))
        with self.turns.shared():
            run = run_model(
                variant,
                cfg.folder(variant),
                [p.text for p in self.prompts],
                cfg.sampling,
                warmup=0 if self.measure_speed else self.warmup,
                repeats=1 if self.measure_speed else self.repeats,
                while_loaded=self._while_loaded,
                **self._engine_kwargs(),
            )
        self._note_load(variant, run.status, run.load_seconds)
        return run

    def _note_load(
        self,
        variant: str,
        status: str,
        load_seconds: float | None,
        timing_as: str | None = None,
        confirm: bool = False,
    ) -> None:
        """One entry of the summary's ``models loaded:`` (conftest.py), the proof each model loads once;
        ``timing_as`` marks the baseline's load as the timing reference for that engine/dtype key, ``confirm``
        the fresh pair of a speed confirmation."""
        load = {
            "variant": variant,
            "worker": self.worker,
            "pid": os.getpid(),
            "status": status,
            "load_seconds": load_seconds,
        }
        if timing_as is not None:
            load |= {"role": "timing", "as": timing_as}
        if confirm:
            load |= {"role": "confirm"}
        self.loads.append(load)

    def _while_loaded(self, engine: Engine, run: ModelRun) -> None:
        """Quality first (it reads answers only), then the timed rounds."""
        self._measure_quality(engine, run)
        if self.measure_speed:
            self._time_while_loaded(engine, run)

    def _measure_quality(self, engine: Engine, run: ModelRun) -> None:
        """A failure here fails the quality cases only (``Quality.error``); the answers stand."""
        if not self.quality.active or run.result is None:
            return
        try:
            if run.name == self.config.baseline:
                answers = run.result.generations
                run.quality = measure_baseline(engine, self.quality, self.config.sampling, self.prompts, answers)
                return
            base = self.baseline().quality
            if base is None or base.error:
                why = base.error if base else self.baseline().error or "not measured"
                raise RuntimeError(f"baseline {self.config.baseline} has no quality references ({why})")
            run.quality = measure_variant(engine, self.quality, base)
        except Exception as exc:
            run.quality = Quality(error=" ".join(f"{type(exc).__name__}: {exc}".split()))
            log.error("gate %s: quality of %s not measured: %s", self.config.name, run.name, run.quality.error)

    def _time_while_loaded(self, engine: Engine, run: ModelRun) -> None:
        """Speed rounds while ``engine`` is loaded, interleaved with the resident baseline."""
        reference = self._reference_engine(engine.name, engine.dtype)
        if reference is None:
            return  # the speed case reports why
        with self.turns.exclusive():
            rounds = interleaved_rounds(reference, engine, self.workload, rounds=self.repeats, warmup=self.warmup)
        run.speed = rounds
        run.timing = Timing(runs=rounds.candidate, output_tokens=rounds.tokens)
        if self._baseline_timing is None and reference is self._references.get("default"):
            # the report's baseline figures: its first paired rounds at its own dtype
            self._baseline_timing = Timing(runs=rounds.baseline, output_tokens=rounds.tokens)
        base = self.runs.get(self.config.baseline)
        if base is not None and base.timing is None:
            base.timing = self._baseline_timing

    def _reference_engine(self, engine: str | None = None, dtype: str | None = None) -> Engine | None:
        """The baseline, loaded once per engine and dtype in this process and kept for timing. No arguments:
        the gate's engine and dtype (or the folder's defaults), whose answers the other cases check; it is
        always the first one loaded, so another is loaded only when a variant runs differently."""
        default = self._load_reference("default", None, self.dtype)
        if dtype is None or default is None or (default.name, default.dtype) == (engine, dtype):
            return default
        return self._load_reference(f"{engine}-{dtype}", engine, dtype)

    def _load_reference(self, key: str, engine: str | None, dtype: str | None) -> Engine | None:
        if key in self._references:
            return self._references[key]
        if key in self._reference_errors:
            return None
        cfg = self.config
        log.info("gate %s: loading %s as the timing reference (%s)", cfg.name, cfg.baseline, key)
        loaded: Engine | None = None
        try:
            with self.turns.shared():
                loaded = open_engine(cfg.folder(cfg.baseline), **self._engine_kwargs(dtype, engine))
            self._references[key] = loaded
            status = "ok"
        except Exception as exc:  # every speed case reports it
            self._reference_errors[key] = f"baseline {cfg.baseline} could not load for timing ({key}): {exc}"
            status = "failed"
        self._note_load(cfg.baseline, status, loaded.load_seconds if loaded else None, timing_as=key)
        return loaded

    def _reference_run(self) -> ModelRun:
        """The baseline's answers from the resident reference engine (when speed cases run)."""
        cfg = self.config
        folder = cfg.folder(cfg.baseline)
        run = ModelRun(name=cfg.baseline, model_dir=str(folder), provenance=provenance_of(folder))
        engine = self._reference_engine()
        if engine is None:
            run.status, run.error = "failed", "; ".join(self._reference_errors.values())
            return run
        try:
            run.load_seconds = engine.load_seconds
            run.engine = engine.describe()
            run.timing = self._baseline_timing  # None until a variant has been timed against it
            with self.turns.shared():
                run.result, _ = measure(engine, [p.text for p in self.prompts], cfg.sampling, warmup=0, repeats=1)
                self._measure_quality(engine, run)
        except Exception as exc:
            run.status, run.error = "failed", " ".join(f"{type(exc).__name__}: {exc}".split())
        return run

    def _shared_baseline(self) -> ModelRun:
        from filelock import FileLock

        assert self.shared_dir is not None
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        cache = self.shared_dir / f"gate-baseline-{self._cache_key()}.json"
        with FileLock(str(cache) + ".lock"):
            if cache.is_file():
                log.info("gate %s: baseline answers from %s", self.config.name, cache)
                return run_from_dict(json.loads(cache.read_text(encoding="utf-8")))
            run = self._generate(self.config.baseline)
            if run.status == "ok" and not (run.quality and run.quality.error):
                write_text_atomic(cache, json.dumps(run_to_dict(run)))  # a failure is measured again next time
            return run

    def _cache_key(self) -> str:
        """Everything that decides the baseline's answers and timings: another gate in the same session
        (another models dir, prompts, engine), a rebuilt baseline or another engine version must not read
        this one's file."""
        cfg = self.config
        versions = package_versions()
        parts = [
            str(cfg.folder(cfg.baseline)),
            folder_digest(cfg.folder(cfg.baseline)),
            json.dumps(versions, sort_keys=True),
            cfg.engine,
            str(self.dtype),
            str(cfg.tensor_parallel_size),
            str(self.warmup),
            str(self.repeats),
            str(self.measure_speed),
            repr(self.quality),
            json.dumps(asdict(cfg.sampling), sort_keys=True),
            json.dumps([asdict(p) for p in self.prompts]),
        ]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def gate_dtype(requested: str | None, *, cuda: bool) -> str | None:
    """The dtype the gate runs every engine at: the one asked for, else the serving dtype on CUDA, else None
    (each folder's default: float32, or bf16 for 4-bit folders in vLLM)."""
    return requested or (SERVING_DTYPE if cuda else None)


def near_floor(speedup: float, floor: float, margin: float = CONFIRM_MARGIN) -> bool:
    """Whether a speed reading is close enough to its floor that one biased engine pair could decide it."""
    return abs(speedup - floor) <= margin


def visible_gpu_count() -> int:
    """GPUs this host exposes, counted from /dev without initialising CUDA (that would fix the devices)."""
    return len([p for p in Path("/dev").glob("nvidia[0-9]*") if p.name[6:].isdigit()])


def workers_share_a_gpu(worker_count: int, tensor_parallel_size: int = 1) -> bool:
    """Whether ``worker_count`` xdist workers put engines on the same GPU: more GPUs wanted than the host gives
    them (``CUDA_VISIBLE_DEVICES`` when set, else /dev). Ask before :func:`pin_worker_gpus` narrows the list."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = len([d for d in visible.split(",") if d.strip()]) if visible is not None else visible_gpu_count()
    return count > 0 and worker_count * tensor_parallel_size > count


def workers_share_a_device(worker_count: int, tensor_parallel_size: int = 1) -> bool:
    """Whether xdist workers' engines compete for one device, so that speed rounds need turns
    (compress/gate/gpu_turns.py): a GPU that more workers use than there are GPUs, or a host without GPUs,
    whose cores every worker's engine shares."""
    if worker_count < 2:
        return False
    return visible_gpu_count() == 0 or workers_share_a_gpu(worker_count, tensor_parallel_size)


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
