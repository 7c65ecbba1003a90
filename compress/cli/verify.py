"""`verify`: one prompt through a model folder's chat template, with its output, token counts and timings.

The old ``02_verify_vllm.py`` job, done right: the prompt goes through the chat template (the old script
sent raw text), and an empty answer is an error (exit 1, ``Generated empty output.``), not a silent pass.
The JSON report is written in every case, with ``status`` ok, empty or failed.

    python -m compress verify --model-dir ~/.cache/exaone-compression/models/smollm2/compressed-l29 \\
        --prompt "What is the capital of France?" --report-file verify.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from compress.cli.options import (
    add_engine_options,
    add_sampling_options,
    add_timing_options,
    check_engine_args,
    sampling_from_args,
)
from compress.core.atomicio import check_writable_file
from compress.core.errors import CompressError, EmptyOutputError
from compress.core.similarity import is_non_empty
from compress.engines import SamplingConfig
from compress.evaluation.run import ModelRun, provenance_of, run_model
from compress.reports.compare import engine_info, folder_info
from compress.reports.json_report import (
    SamplingInfo,
    TimingInfo,
    VerifyReport,
    host_info,
    now,
    write_json,
)

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="generate one chat answer from a model folder; fail on an empty answer",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--model-dir", required=True, help="Hugging Face model folder to load")
    parser.add_argument("--prompt", default="hello", help="user message, sent through the chat template")
    parser.add_argument(
        "--report-file", default=None, help="write the JSON report here (its folder must exist)"
    )
    add_engine_options(parser)
    add_sampling_options(parser)
    # One untimed warm-up by default, as in eval-compare, so first-batch costs stay out of the timing.
    add_timing_options(parser, warmup=1, repeats=1)
    parser.set_defaults(run=run)


def build_verify_report(
    model_dir: str, prompt: str, sampling: SamplingConfig, run: ModelRun, warmup: int
) -> VerifyReport:
    """The report from a finished (or failed) run of one prompt."""
    fields: dict = {
        "created": now(),
        "model_dir": model_dir,
        "prompt": prompt,
        "sampling": SamplingInfo(**asdict(sampling)),
        "host": host_info(),
        "engine": engine_info(run),
        "provenance": folder_info(run),
        "load_seconds": run.load_seconds,
        "status": "failed",
        "error": run.error,
    }
    if run.ok and run.result is not None and run.timing is not None:
        gen = run.result.generations[0]
        t = run.timing
        fields.update(
            status="ok" if is_non_empty(gen.text) else "empty",
            output=gen.text,
            prompt_tokens=gen.prompt_tokens,
            output_tokens=gen.output_tokens,
            finish_reason=gen.finish_reason,
            generation_seconds=t.median,
            tokens_per_second=t.tokens_per_second,
            timing=TimingInfo(
                runs=t.runs,
                median=t.median,
                best=t.best,
                spread=t.spread,
                warmup=warmup,
                repeats=len(t.runs),
                output_tokens=t.output_tokens,
                tokens_per_second=t.tokens_per_second,
            ),
        )
    return VerifyReport(**fields)


def run(args: argparse.Namespace) -> int:
    report_file = check_writable_file(args.report_file) if args.report_file else None
    sampling = sampling_from_args(args)
    check_engine_args(args)
    if not args.prompt.strip():
        raise CompressError("--prompt is empty", "pass the user message to send, e.g. --prompt hello")
    model_dir = str(args.model_dir)
    error: Exception | None = None
    try:
        result = run_model(
            Path(model_dir).name,
            model_dir,
            [args.prompt],
            sampling,
            engine=args.engine,
            dtype=args.dtype,
            warmup=args.warmup,
            repeats=args.repeats,
            tensor_parallel_size=args.tensor_parallel_size,
            trust_remote_code=args.trust_remote_code,
            catch=False,
        )
    except Exception as exc:  # the report records any failure; the CLI turns it into one line
        error = exc
        message = str(exc) if isinstance(exc, CompressError) else f"{type(exc).__name__}: {exc}"
        result = ModelRun(
            name=Path(model_dir).name, model_dir=model_dir, status="failed", error=message,
            provenance=provenance_of(model_dir),
        )  # fmt: skip
    report = build_verify_report(model_dir, args.prompt, sampling, result, args.warmup)
    if report_file is not None:
        write_json(report, report_file)
    where = f" (report: {report_file})" if report_file else ""
    if error is not None:
        if isinstance(error, CompressError):
            raise error
        raise CompressError(
            f"model {model_dir} failed to load or generate ({report.error})",
            f"run with --debug for the traceback, or try --engine hf{where}",
        ) from error
    print(report.output)
    print(
        f"verify: {report.status}, {report.output_tokens} tokens in {report.generation_seconds:.2f} s "
        f"({report.tokens_per_second:.1f} tok/s), load {report.load_seconds:.1f} s, "
        f"{report.engine.engine}/{report.engine.dtype} on {report.engine.device}{where}",
        file=sys.stderr,
    )
    if report.status == "empty":
        raise EmptyOutputError(
            "Generated empty output",
            f"the model answered {report.output_tokens} token(s) with no visible text through its chat "
            f"template: check the weights, the chat template and the EOS token{where}",
        )
    return 0
