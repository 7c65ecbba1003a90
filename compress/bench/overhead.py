"""The release gate's own overhead: its wall time against a bare vLLM script doing the same model work.

Both run as fresh subprocesses from here, in one run, on the same variants. The bare script
(:mod:`compress.bench.bare_gate`) makes the same ``LLM(...)`` per variant with the gate engine's settings
(bfloat16 on CUDA; on a CPU float32, or bfloat16 for 4-bit folders; seed 0; ``max_model_len`` min(1024,
model's); eager on the CPU; the GPU share the gate gives) and the same generations, in the gate's mode
(compress/gate/session.py):

* ``plain`` when no speed case is selected (a CPU host, or ``--no-speed``): per variant, ``warmup + repeats``
  batches of the fixed prompts, then shutdown;
* ``speed`` when the speed cases run (``-m gpu`` on CUDA): the baseline stays loaded as the timing reference,
  every model answers once, and each candidate runs ``warmup + repeats`` fixed-length rounds in turns with it.

The gate is ``pytest tests/gate/test_release_gate.py`` with ``--gate-warmup``/``--gate-repeats`` (and the
speed batch and GPU share, when given) pinned to the same values. Both sides pay Python start, ``import vllm``,
the loads and the generations; the ratio shows what pytest, the checks, goldens and reports add. With several
pairs the order alternates (bare first, then gate first). By default one untimed bare run goes first
("prime"): on a GPU the first engine start of a shape pays torch.compile and kernel JIT (a minute or more),
which would otherwise land on whichever side ran first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

import compress
from compress.core.errors import CompressError
from compress.core.prompts import load_prompts
from compress.engines import SamplingConfig
from compress.engines.select import choose_engine, default_dtype, has_cuda
from compress.engines.vllm_engine import llm_kwargs
from compress.evaluation.speed import SpeedWorkload
from compress.evaluation.timing import round_ratios, summarize
from compress.folders.checks import check_model_folder
from compress.folders.matrix import BASELINE, list_variants
from compress.gate.child_env import child_env
from compress.gate.session import SHARED_GPU_MEMORY, SPEED_ROUNDS, SPEED_WARMUP, gate_dtype

TARGET_RATIO = 1.10
QUALITY_CASES = ("test_fidelity", "test_task_accuracy")
GATE_TEST = Path("tests/gate/test_release_gate.py")


@dataclass(frozen=True)
class OverheadSettings:
    models_dir: Path
    baseline: str = BASELINE
    variants: tuple[str, ...] = ()
    """Candidates besides the baseline; empty: every folder in models_dir (as the gate does)."""
    pairs: int = 1
    warmup: int | None = None
    repeats: int | None = None
    """None: the gate's defaults for its mode (speed: 2 and 8 rounds; plain: 0 and 1 batches)."""
    speed: bool | None = None
    """None: as the gate on this host (speed cases run with CUDA only). False on CUDA deselects them."""
    speed_batch: int | None = None
    gpu_memory_utilization: float | None = None
    prime: bool = True
    pytest_args: tuple[str, ...] = ()
    repo: Path = field(default_factory=lambda: Path(compress.__file__).resolve().parents[1])


@dataclass(frozen=True)
class Plan:
    """What both sides will do, resolved and checked before anything runs."""

    names: list[str]
    """The baseline first, then the candidates."""
    mode: str
    """plain or speed (see the module docstring)."""
    warmup: int
    repeats: int
    cuda: bool


def resolve(settings: OverheadSettings, cuda: bool) -> Plan:
    """Check the folders and options, and settle the mode and counts the gate will use."""
    folder = settings.models_dir
    if not folder.is_dir():
        raise CompressError(f"--models-dir {folder} does not exist", "pass a folder with one folder per variant")
    if not (folder / settings.baseline).is_dir():
        raise CompressError(
            f"baseline {settings.baseline!r} has no folder in {folder}", "pass --baseline with an existing variant"
        )
    found = list_variants(folder, settings.baseline)
    asked = [v for v in settings.variants if v != settings.baseline] if settings.variants else found
    unknown = [v for v in asked if v not in found]
    if unknown:
        raise CompressError(f"--variants names {', '.join(unknown)}, not in {folder}", f"pick from: {', '.join(found)}")
    names = [settings.baseline, *asked]
    for name in names:
        config = check_model_folder(folder / name)
        if choose_engine(folder / name, "auto", config=config) != "vllm":
            raise CompressError(
                f"variant {name} would run in HF transformers here (4-bit without CUDA), not vLLM",
                "leave 4-bit variants out of --variants on this host; the overhead compares vLLM work only",
            )
    if not (settings.repo / GATE_TEST).is_file():
        raise CompressError(f"{settings.repo / GATE_TEST} not found", "run from a checkout of the repository")
    if settings.pairs < 1:
        raise CompressError(f"--pairs {settings.pairs} is below 1", "use 1 or more")
    speed = cuda if settings.speed is None else settings.speed
    if speed and not cuda:
        raise CompressError(
            "--speed needs CUDA: without it the gate times its speed rounds one model at a time (--speed-on-cpu)",
            "leave --speed out on this host",
        )
    if speed:
        warmup = settings.warmup if settings.warmup is not None else SPEED_WARMUP
        repeats = settings.repeats if settings.repeats is not None else SPEED_ROUNDS
    else:
        warmup = settings.warmup if settings.warmup is not None else 0
        repeats = settings.repeats if settings.repeats is not None else 1
    if warmup < 0 or repeats < 1:
        raise CompressError("--warmup must be >= 0 and --repeats >= 1", "e.g. --warmup 1 --repeats 3")
    return Plan(names=names, mode="speed" if speed else "plain", warmup=warmup, repeats=repeats, cuda=cuda)


def bare_spec(settings: OverheadSettings, plan: Plan) -> dict:
    """What the gate's engine (compress.engines.vllm_engine.VllmEngine) would pass to ``LLM`` per variant, and
    the generations its session would make."""
    sampling = SamplingConfig()  # the gate's sampling (GateConfig.sampling default)
    share = settings.gpu_memory_utilization
    if share is None and plan.mode == "speed":
        share = SHARED_GPU_MEMORY
    variants = []
    for name in plan.names:
        path = settings.models_dir / name
        config = check_model_folder(path)
        dtype = gate_dtype(None, cuda=plan.cuda) or default_dtype(config, "vllm")  # as the gate's session
        kwargs = llm_kwargs(str(path), dtype=dtype, cuda=plan.cuda, gpu_memory_utilization=share)
        variants.append({"name": name, "llm_kwargs": kwargs})
    prompts = [p.text for p in load_prompts()]
    speed = SpeedWorkload.for_gate(prompts, sampling, settings.speed_batch)  # what the gate's rounds generate
    return {
        "mode": plan.mode,
        "variants": variants,
        "prompts": prompts,
        "sampling": asdict(sampling),
        "warmup": plan.warmup,
        "repeats": plan.repeats,
        "speed": {"prompts": speed.prompts, "sampling": asdict(speed.sampling)},
    }


def gate_command(settings: OverheadSettings, plan: Plan, tmp: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(GATE_TEST)]
    if plan.cuda:
        cmd += ["-m", "gpu"]  # on a CUDA host every gate case is marked gpu; without CUDA none is
    # The bare script does what the answer, golden and speed cases need; the quality cases' scoring is work it
    # does not do, so they are left out of both sides.
    skip = QUALITY_CASES + (("test_speedup",) if plan.cuda and plan.mode == "plain" else ())
    cmd += ["-k", " and ".join(f"not {case}" for case in skip)]
    cmd += [
        "--gate-models-dir",
        str(settings.models_dir),
        "--gate-baseline",
        settings.baseline,
        "--gate-variants",
        ",".join(plan.names[1:]) or settings.baseline,
        "--gate-warmup",
        str(plan.warmup),
        "--gate-repeats",
        str(plan.repeats),
    ]
    if not plan.names[1:]:
        cmd += ["--gate-allow-empty"]  # the baseline alone: its own cases are what is measured
    if settings.speed_batch is not None:
        cmd += ["--gate-speed-batch", str(settings.speed_batch)]
    if settings.gpu_memory_utilization is not None:
        cmd += ["--gate-gpu-memory-utilization", str(settings.gpu_memory_utilization)]
    cmd += [
        "--gate-report",
        str(tmp / "gate.json"),
        "--junitxml",
        str(tmp / "gate-junit.xml"),
        "-p",
        "no:cacheprovider",
        "-q",
        *settings.pytest_args,
    ]
    return cmd


def _env() -> dict[str, str]:
    """Both sides get the settings the gate's conftest would set, so neither logs or forks differently."""
    env = child_env()
    env.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    env.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    return env


def _timed_run(cmd: list[str], cwd: Path, log: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.run(cmd, cwd=cwd, env=_env(), stdout=handle, stderr=subprocess.STDOUT)
    return time.perf_counter() - started, proc.returncode


def _summary_line(log: Path) -> str:
    lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    hits = [x for x in lines if (" passed" in x or " failed" in x or " error" in x) and " in " in x]
    return hits[-1] if hits else (lines[-1] if lines else "(no output)")


def _tail(log: Path, n: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def run_overhead(settings: OverheadSettings, *, keep_logs: Path | None = None) -> dict:
    """Time the bare script and the gate (alternating order over ``pairs``); return the JSON-ready result."""
    plan = resolve(settings, has_cuda())
    with tempfile.TemporaryDirectory(prefix="gate-overhead-") as tmp_name:
        tmp = Path(keep_logs) if keep_logs else Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        spec = tmp / "bare-spec.json"
        spec.write_text(json.dumps(bare_spec(settings, plan), indent=1))
        bare_cmd = [sys.executable, "-m", "compress.bench.bare_gate", str(spec), str(tmp / "bare-out.json")]
        gate_cmd = gate_command(settings, plan, tmp)
        print(
            f"variants: {', '.join(plan.names)}; mode {plan.mode}; warm-up {plan.warmup}, repeats {plan.repeats}; "
            f"cuda: {plan.cuda}",
            flush=True,
        )
        print("gate command: " + " ".join(gate_cmd), flush=True)
        primed = None
        if settings.prime:
            print("prime: one untimed bare run (compile caches, page cache) ...", flush=True)
            seconds, code = _timed_run(bare_cmd, settings.repo, tmp / "prime.log")
            if code != 0:
                raise CompressError(
                    f"the bare vLLM script failed (exit {code}):\n{_tail(tmp / 'prime.log')}",
                    "fix the models or the environment; the gate would fail the same way",
                )
            primed = seconds
            print(f"  prime took {seconds:.1f} s", flush=True)
        bare: list[float] = []
        gate: list[float] = []
        gate_codes: list[int] = []
        breakdown: list[dict] = []
        order_log = []
        for i in range(settings.pairs):
            order = ("bare", "gate") if i % 2 == 0 else ("gate", "bare")
            for side in order:
                log = tmp / f"{side}-{i}.log"
                print(f"pair {i + 1}/{settings.pairs}: {side} ...", flush=True)
                seconds, code = _timed_run(bare_cmd if side == "bare" else gate_cmd, settings.repo, log)
                print(f"  {side}: {seconds:.1f} s (exit {code})", flush=True)
                if side == "bare":
                    if code != 0:
                        raise CompressError(f"the bare vLLM script failed (exit {code}):\n{_tail(log)}", "see above")
                    bare.append(seconds)
                    breakdown.append(json.loads((tmp / "bare-out.json").read_text()))
                else:
                    gate.append(seconds)
                    gate_codes.append(code)
                    print(f"  gate summary: {_summary_line(log)}", flush=True)
                    if code not in (0, 1):  # 1 = some case failed: the timing still counts
                        print(_tail(log), flush=True)
            order_log.append(list(order))
        ratios = round_ratios(gate, bare)  # gate/bare per pair (>1: the gate is slower)
        result = {
            "kind": "compress bench overhead",
            "models_dir": str(settings.models_dir),
            "variants": plan.names,
            "mode": plan.mode,
            "warmup": plan.warmup,
            "repeats": plan.repeats,
            "cuda": plan.cuda,
            "prime_seconds": primed,
            "order": order_log,
            "bare_seconds": bare,
            "gate_seconds": gate,
            "gate_exit_codes": gate_codes,
            "gate_summary": _summary_line(tmp / f"gate-{settings.pairs - 1}.log"),
            "ratio_of_medians": median(gate) / median(bare),
            "ratio_per_pair": ratios,
            "ratio_spread": summarize(ratios).to_dict(),
            "target": TARGET_RATIO,
            "bare_breakdown": breakdown,
            "gate_command": gate_cmd,
            "bare_command": bare_cmd,
        }
    result["within_target"] = result["ratio_of_medians"] <= TARGET_RATIO
    return result


def overhead_text(result: dict) -> str:
    b = result["bare_breakdown"][-1] if result["bare_breakdown"] else {}
    parts = ", ".join(
        f"{v['name']}: load {v['load_seconds']:.1f} s + gen {v['generate_seconds']:.2f} s"
        for v in b.get("variants", [])
    )
    verdict = "within" if result["within_target"] else "ABOVE"
    return "\n".join(
        [
            "| side | wall s (each pair) | median s |",
            "| --- | --- | ---: |",
            f"| bare vLLM script | {', '.join(f'{x:.1f}' for x in result['bare_seconds'])} "
            f"| {median(result['bare_seconds']):.1f} |",
            f"| gate (pytest) | {', '.join(f'{x:.1f}' for x in result['gate_seconds'])} "
            f"| {median(result['gate_seconds']):.1f} |",
            "",
            f"overhead ratio gate/bare = {result['ratio_of_medians']:.3f} ({verdict} the target "
            f"<= {result['target']:.2f}); per pair: {', '.join(f'{r:.3f}' for r in result['ratio_per_pair'])}",
            f"bare breakdown (last run): import vllm {b.get('import_seconds', 0):.1f} s; {parts}",
            f"gate: {result['gate_summary']} (exit codes {result['gate_exit_codes']})",
        ]
    )
