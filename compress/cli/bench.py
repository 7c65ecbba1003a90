"""`bench`: vLLM speed of the real EXAONE variants from config-only folders, and the gate's own overhead.

    python -m compress bench --model exaone4-1.2b --out reports/bench/h200.json     # on a GPU
    python -m compress bench --shape tiny --variants base,l29 --rounds 3 --out /tmp/b.json   # CPU smoke run
    python -m compress bench overhead --models-dir $EXAONE_COMPRESSION_HOME/models/tiny-exaone4 \\
        --variants compressed-l29 --out reports/bench/overhead.json

`bench` writes config-only model folders (no weights: vLLM's load_format="dummy" fills random weights of the
right shapes) for base, l29 (one decoder layer fewer), w4a16 (compressed-tensors W4A16, group 128, as
llm-compressor 0.14 writes it) and l29-w4a16, keeps them all loaded at once and times them in interleaved
rounds (A B C D, A B C D, ...) so drift hits every variant alike. Load time is reported apart. Speedups are
ratios within the run: of the medians, and the median of per-round ratios. The physical limit is the weight
bytes one decode step reads, divided by the HBM bandwidth (--hbm-tbps).

`bench overhead` times the release gate (pytest) against a bare vLLM script doing the same loads and
generations, in one run, and prints the ratio gate/bare (target <= 1.10).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from compress.bench.dummy_models import MODELS, SHAPES, VARIANTS
from compress.core.atomicio import check_writable_file
from compress.core.errors import CompressError
from compress.folders.matrix import BASELINE
from compress.gate.options import split_list


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="speed of the EXAONE variants with dummy weights (interleaved), or the gate's overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to measure")
    what.add_argument(
        "--model",
        choices=(*MODELS, "all"),
        default="exaone4-1.2b",
        help="model config (default: exaone4-1.2b). exaone3.5-2.4b is skipped with the reason when vLLM "
        "cannot resolve its config without trust_remote_code (its config class is remote code)",
    )
    what.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        metavar="A,B",
        help=f"comma list from {', '.join(VARIANTS)} (default: all). W4A16 is skipped without CUDA",
    )
    what.add_argument(
        "--shape",
        choices=SHAPES,
        default="full",
        help="full: the real sizes; tiny: 4 layers of hidden 256, vocab 4096, for a CPU smoke run (default: full)",
    )
    timing = parser.add_argument_group("timing")
    timing.add_argument("--rounds", type=int, default=10, help="timed interleaved rounds (default: 10)")
    timing.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default: 2)")
    timing.add_argument(
        "--batch-prompts",
        type=int,
        default=10,
        help="prompts in the batch workload: the gate's 10, cycled when more (default: 10)",
    )
    timing.add_argument("--max-tokens", type=int, default=64, help="exact output tokens per prompt (default: 64)")
    timing.add_argument("--rotate", action="store_true", help="start each round one variant later (A B C, B C A, ...)")
    timing.add_argument(
        "--sequential",
        action="store_true",
        help="one process per variant instead of all loaded at once (chosen automatically when a second "
        "engine cannot be created in this process); per-round ratios then pair separate processes",
    )
    engine = parser.add_argument_group("engine")
    engine.add_argument("--dtype", choices=("bfloat16", "float16"), default="bfloat16", help="default: bfloat16")
    engine.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.15,
        help="GPU memory fraction per engine; four must fit at once (default: 0.15)",
    )
    engine.add_argument(
        "--enforce-eager",
        action="store_true",
        default=None,
        help="no torch.compile or CUDA graphs on the GPU (faster start, slower decode; default: vLLM's)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--out", default=None, metavar="JSON", help="write the full result here (atomically)")
    out.add_argument(
        "--tokenizer-dir",
        default=None,
        metavar="DIR",
        help="stand-in tokenizer folder with the model's vocab size (default: built once into "
        "$EXAONE_COMPRESSION_HOME/bench/tokenizer-v<vocab> from Python's stdlib sources)",
    )
    out.add_argument(
        "--models-root",
        default=None,
        metavar="DIR",
        help="where the config-only folders go (default: $EXAONE_COMPRESSION_HOME/bench/models)",
    )
    out.add_argument(
        "--hbm-tbps", type=float, default=4.8, help="memory bandwidth for the physical limit (default: 4.8, H200)"
    )
    parser.set_defaults(run=run)

    sub = parser.add_subparsers(dest="bench_mode", metavar="{overhead,separation,reruns}")
    sep = sub.add_parser(
        "separation",
        help="gate a matrix's good variants beside degraded copies of graded severity (fixed and held-out prompts)",
        description="Evidence that the quality verdicts separate: builds a models folder with the matrix's good "
        "variants and degraded copies (noise, round-to-nearest 3/4-bit, more layers dropped, the first layer "
        "dropped), runs the gate's fidelity and task cases on the fixed prompts and on the held-out set, and "
        "prints a markdown table of every figure and verdict.",
    )
    sep.add_argument("--matrix", required=True, help="a built matrix (e.g. smollm2), under $EXAONE_COMPRESSION_HOME")
    sep.add_argument("--work", required=True, metavar="DIR", help="new folder for the study's models and reports")
    sep.add_argument("--gate-name", default=None, help="whose calibrated floors judge the copies (default: --matrix)")
    sep.add_argument("--no-heldout", action="store_true", help="the fixed prompts only")
    sep.add_argument("--out", dest="separation_out", default=None, metavar="MD", help="also write the table here")
    sep.add_argument(
        "--pytest-args",
        dest="separation_pytest_args",
        default="",
        help="extra arguments for the gate's pytest runs, one string; write --pytest-args=--gate-enforce-eager "
        "(with '=': a value that starts with '--' is otherwise read as an option)",
    )
    sep.set_defaults(run=run_separation)
    ov = sub.add_parser(
        "overhead",
        help="the gate's wall time against a bare vLLM script doing the same model work",
        description=(
            "Time `pytest tests/gate/test_release_gate.py` (with -m gpu on a CUDA host) and a bare vLLM "
            "script that makes the same LLM(...) per variant and the same generations as the gate's session "
            "(answers, and on CUDA the speed rounds in turns with the resident baseline), then shuts down, in "
            "one run; print both wall times and the ratio gate/bare (target <= 1.10). Run from the repository "
            "root."
        ),
    )
    ov.add_argument("--models-dir", required=True, metavar="DIR", help="folder with one folder per variant")
    ov.add_argument("--baseline", default=BASELINE, help=f"the gate's baseline variant (default: {BASELINE})")
    ov.add_argument(
        "--variants",
        dest="overhead_variants",
        default=None,
        metavar="A,B",
        help="candidates besides the baseline (default: every folder, as the gate does)",
    )
    ov.add_argument("--pairs", type=int, default=1, help="bare+gate pairs, order alternating (default: 1)")
    ov.add_argument(
        "--warmup",
        dest="overhead_warmup",
        type=int,
        default=None,
        help="untimed batches/rounds per model on both sides (default: the gate's: 2 speed rounds, or 0)",
    )
    ov.add_argument(
        "--repeats",
        dest="overhead_repeats",
        type=int,
        default=None,
        help="timed batches/rounds per model on both sides (default: the gate's: 8 speed rounds, or 1 batch)",
    )
    ov.add_argument(
        "--speed",
        dest="overhead_speed",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include the gate's speed cases (baseline resident, rounds in turns) on both sides; default: as "
        "`pytest -m gpu` does, i.e. on with CUDA, off without; --no-speed on CUDA adds -k 'not test_speedup'",
    )
    ov.add_argument("--speed-batch", type=int, default=None, help="the gate's --gate-speed-batch (default: the gate's)")
    ov.add_argument(
        "--gpu-memory-utilization",
        dest="overhead_gpu_memory_utilization",
        type=float,
        default=None,
        help="the gate's --gate-gpu-memory-utilization (default: the gate's: 0.28 per engine in speed mode)",
    )
    ov.add_argument(
        "--no-prime",
        dest="prime",
        action="store_false",
        help="skip the untimed bare run that first warms compile caches (fair only when caches are warm)",
    )
    ov.add_argument("--out", dest="overhead_out", default=None, metavar="JSON", help="write the result here")
    ov.add_argument("--logs", default=None, metavar="DIR", help="keep both sides' logs here (default: a temp dir)")
    ov.add_argument(
        "--pytest-args",
        default="",
        help="extra arguments for the gate's pytest, one string; write --pytest-args='-x -v'",
    )
    ov.set_defaults(run=run_overhead)
    re_ = sub.add_parser(
        "reruns",
        help="the speed verdict across fresh runs: the gate's speed cases N times, new engines each time",
        description="Run `pytest tests/gate/test_release_gate.py -k test_speedup` over the same folder --runs "
        "times (each a new process with new engines, as separate CI jobs would), and print how often each "
        "variant passed and failed, the spread of its speedups and how many readings landed near the floor and "
        "were confirmed by a second engine pair. A floor should pass a good variant every time and fail a "
        "variant 1.3x slower end to end every time (degrade.add_idle_layers makes one with the same answers). "
        "Run from the repository root, on a machine doing nothing else.",
    )
    re_.add_argument("--models-dir", dest="reruns_models_dir", required=True, metavar="DIR",
                     help="folder with the baseline and the variants")  # fmt: skip
    re_.add_argument("--baseline", dest="reruns_baseline", default=BASELINE, metavar="NAME",
                     help=f"the gate's baseline variant (default: {BASELINE})")  # fmt: skip
    re_.add_argument("--variants", dest="reruns_variants", required=True, metavar="A,B",
                     help="the variants timed in every rerun, e.g. good,slow")  # fmt: skip
    re_.add_argument("--runs", type=int, default=10, metavar="N", help="fresh gate runs (default: 10)")
    re_.add_argument("--work", dest="reruns_work", required=True, metavar="DIR",
                     help="where each rerun's report and log go (created)")  # fmt: skip
    re_.add_argument("--speed-on-cpu", dest="reruns_speed_on_cpu", action="store_true",
                     help="time without CUDA (--gate-speed-on-cpu): evidence about the verdict rule on this CPU "
                     "only; timings on a shared CPU are noise")  # fmt: skip
    re_.add_argument("--out", dest="reruns_out", default=None, metavar="JSON", help="also write the result here")
    re_.add_argument("--pytest-args", dest="reruns_pytest_args", default="", metavar="ARGS",
                     help="more arguments for each gate run, one string: --pytest-args='--gate-repeats 8'")  # fmt: skip
    re_.set_defaults(run=run_reruns)


def run(args: argparse.Namespace) -> int:
    from compress.bench.benchmark import BenchSettings, markdown, run_bench, write_result

    out = check_writable_file(args.out) if args.out else None
    variants = tuple(split_list(args.variants))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise CompressError(f"unknown variants {', '.join(unknown)}", f"use some of: {', '.join(VARIANTS)}")
    settings = BenchSettings(
        models=MODELS if args.model == "all" else (args.model,),
        variants=variants,
        shape=args.shape,
        rounds=args.rounds,
        warmup=args.warmup,
        batch_prompts=args.batch_prompts,
        max_tokens=args.max_tokens,
        dtype=args.dtype,
        gpu_memory_utilization=args.gpu_memory_utilization,
        enforce_eager=args.enforce_eager,
        sequential=args.sequential,
        rotate=args.rotate,
        hbm_tbps=args.hbm_tbps,
        **({"root": Path(args.models_root)} if args.models_root else {}),
        tokenizer_dir=Path(args.tokenizer_dir) if args.tokenizer_dir else None,
    )
    settings.check()
    result = run_bench(settings)
    print(markdown(result))
    if out is not None:
        print(f"wrote {write_result(result, out)}")
    ok = all(m.get("status") in ("ok", "skipped") for m in result["models"].values())
    return 0 if ok else 1


def run_overhead(args: argparse.Namespace) -> int:
    import json
    import shlex

    from compress.bench.overhead import OverheadSettings, overhead_text
    from compress.bench.overhead import run_overhead as measure
    from compress.core.atomicio import atomic_file

    out = check_writable_file(args.overhead_out) if args.overhead_out else None
    settings = OverheadSettings(
        models_dir=Path(args.models_dir).expanduser().resolve(),
        baseline=args.baseline,
        variants=tuple(split_list(args.overhead_variants)),
        pairs=args.pairs,
        warmup=args.overhead_warmup,
        repeats=args.overhead_repeats,
        speed=args.overhead_speed,
        speed_batch=args.speed_batch,
        gpu_memory_utilization=args.overhead_gpu_memory_utilization,
        prime=args.prime,
        pytest_args=tuple(shlex.split(args.pytest_args)),
    )
    result = measure(settings, keep_logs=Path(args.logs) if args.logs else None)
    print(overhead_text(result))
    if out is not None:
        with atomic_file(out) as handle:
            handle.write(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


def run_reruns(args: argparse.Namespace) -> int:
    import json
    import shlex

    from compress.bench.reruns import RerunSettings, markdown
    from compress.bench.reruns import run_reruns as rerun
    from compress.core.atomicio import atomic_file

    out = check_writable_file(args.reruns_out) if args.reruns_out else None
    models = Path(args.reruns_models_dir).expanduser().resolve()
    if not models.is_dir():
        raise CompressError(f"no models folder at {models}", "pass --models-dir with the baseline and variants in it")
    settings = RerunSettings(
        models_dir=models,
        variants=tuple(split_list(args.reruns_variants)),
        runs=args.runs,
        baseline=args.reruns_baseline,
        speed_on_cpu=args.reruns_speed_on_cpu,
        pytest_args=tuple(shlex.split(args.reruns_pytest_args)),
    )
    result = rerun(settings, Path(args.reruns_work).expanduser().resolve())
    print(markdown(result))
    if out is not None:
        with atomic_file(out) as handle:
            handle.write(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    timed = all(s["other"] == 0 for s in result["summary"].values())
    return 0 if timed else 1


def run_separation(args: argparse.Namespace) -> int:
    from compress.bench.separation import run_study
    from compress.core import paths
    from compress.core.atomicio import write_text_atomic

    out = check_writable_file(args.separation_out) if args.separation_out else None
    work = Path(args.work).expanduser().resolve()
    if work.exists():
        raise CompressError(f"{work} exists", "pass a new folder to --work (the study writes models there)")
    repo = Path(__file__).resolve().parents[2]
    import shlex

    text = run_study(
        paths.matrix_dir(args.matrix),
        work,
        gate=args.gate_name or args.matrix,
        repo=repo,
        heldout=not args.no_heldout,
        pytest_args=tuple(shlex.split(args.separation_pytest_args)),
    )
    print(text)
    if out is not None:
        write_text_atomic(out, text)
        print(f"wrote {out}")
    return 0
