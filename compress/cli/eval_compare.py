"""`eval-compare`: a baseline against candidate variants on the fixed prompts, into a JSON report, a markdown
table and a speedup-vs-similarity plot.

The old ``08_eval_compare.py`` flags and report fields, plus load time apart from generation time, output
tokens and tokens/s, repeated timed runs after a warm-up, and engine, versions and device per model.

    python -m compress eval-compare --baseline-model models/base \\
        --candidate-models models/compressed-l29 models/base-llmc-awq --report-file reports/run.json
    python -m compress eval-compare --matrix smollm2 --report-file reports/smollm2/eval_compare.json
"""

from __future__ import annotations

import argparse
import logging
import sys

from compress.cli.options import (
    add_engine_options,
    add_sampling_options,
    add_timing_options,
    check_engine_args,
    sampling_from_args,
)
from compress.core.errors import CompressError
from compress.core.prompts import default_fidelity_prompts_file, load_prompts
from compress.core.tasks import load_tasks
from compress.evaluation.compare import matrix_models, name_models, run_models
from compress.evaluation.quality import QualityPlan
from compress.reports import check_writable_file, companion_paths, markdown_table, write_compare_reports
from compress.reports.compare import build_report
from compress.reports.json_report import Settings

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-compare",
        help="compare candidate variants with a baseline: similarity, speedup, empty outputs",
        description=__doc__.split("\n\n")[0],
    )
    models = parser.add_argument_group("models")
    which = models.add_mutually_exclusive_group(required=True)
    which.add_argument("--baseline-model", help="the baseline model folder")
    which.add_argument(
        "--matrix",
        help="a built variant matrix: baseline = <matrix>/base, candidates = its other variants "
        "(under $EXAONE_COMPRESSION_HOME/models)",
    )
    models.add_argument(
        "--candidate-models",
        nargs="+",
        default=[],
        metavar="MODEL",
        help="candidate folders; with --matrix, variant names to keep (default: all of the matrix)",
    )
    parser.add_argument(
        "--report-file", required=True, help="JSON report path; the .md table and .png plot go beside it"
    )
    parser.add_argument(
        "--prompts-file", default=None, help="prompts (TOML, JSON or text); default: the fixed set"
    )
    quality = parser.add_argument_group("quality (measured while each model is loaded, never timed)")
    quality.add_argument(
        "--fidelity-prompts",
        default=None,
        metavar="FILE",
        help="prompts whose baseline answers each candidate scores teacher-forced (KL, top-1 agreement), "
        "besides --prompts-file's; default: the shipped fidelity set",
    )
    quality.add_argument(
        "--tasks-file", default=None, metavar="JSONL", help="task items with checkable answers (default: shipped)"
    )
    quality.add_argument(
        "--no-quality", action="store_true", help="skip fidelity and task accuracy (text similarity only, as before)"
    )
    add_engine_options(parser)
    add_sampling_options(parser)
    add_timing_options(parser, warmup=1, repeats=3)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Everything that can be checked without a model is checked first: no load is wasted on a typo.
    report_file = check_writable_file(args.report_file)
    if report_file.suffix in (".md", ".png"):
        raise CompressError(
            f"report file {report_file} would be overwritten by its own table or plot",
            "give the JSON report a .json name",
        )
    for companion in companion_paths(report_file).values():
        check_writable_file(companion)
    sampling = sampling_from_args(args)
    check_engine_args(args)
    prompts = load_prompts(args.prompts_file)
    plan = None
    if not args.no_quality:
        fidelity_prompts = load_prompts(args.fidelity_prompts or default_fidelity_prompts_file())
        plan = QualityPlan(fidelity_sets={"fidelity": fidelity_prompts}, tasks=load_tasks(args.tasks_file))
    if args.matrix:
        baseline, candidates = matrix_models(args.matrix, args.candidate_models or None)
    else:
        if not args.candidate_models:
            raise CompressError(
                "no candidate models", "pass --candidate-models C1 [C2 ...] after --baseline-model"
            )
        baseline, *candidates = name_models([args.baseline_model, *args.candidate_models])
    log.info(
        "eval-compare: baseline %s, %d candidate(s), %d prompts, warmup %d, repeats %d",
        baseline.name,
        len(candidates),
        len(prompts),
        args.warmup,
        args.repeats,
    )

    settings = Settings(
        engine=args.engine,
        dtype=args.dtype,
        warmup=args.warmup,
        repeats=args.repeats,
        tensor_parallel_size=args.tensor_parallel_size,
    )
    runs = run_models(
        baseline,
        candidates,
        prompts,
        sampling,
        trust_remote_code=args.trust_remote_code,
        quality=plan,
        **dict(settings),
    )
    report = build_report(runs[0], runs[1:], prompts, sampling, settings)
    written = write_compare_reports(report, report_file)
    print(markdown_table(report), end="")
    print(
        "reports: " + ", ".join(str(p) for p in written.values()),
        file=sys.stderr,
    )
    failed = [m.name for m in report.models.values() if m.status == "failed"]
    if failed:
        print(
            f"error: {len(failed)} of {len(report.models)} models failed: {', '.join(failed)}. "
            f"Fix: see their error in {report_file} (models.<name>.error)",
            file=sys.stderr,
        )
        return 1
    return 0
