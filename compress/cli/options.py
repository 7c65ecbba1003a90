"""Engine and sampling options shared by the commands that generate (verify, eval-compare).

Flag names and defaults are the old scripts' (temperature 0.0, min_tokens 8, max_tokens 64), so users can
switch without relearning them.
"""

from __future__ import annotations

import argparse

from compress.core.errors import CompressError
from compress.engines import SamplingConfig
from compress.engines.select import ENGINES

DTYPES = ("float32", "bfloat16", "float16")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="auto: vLLM, except 4-bit folders on a host without CUDA, which go to HF (default: auto)",
    )
    group.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="activation dtype (default: float32, whose greedy text is portable; bfloat16 for 4-bit on vLLM)",
    )
    group.add_argument(
        "--tensor-parallel-size", type=int, default=1, help="GPUs per model for vLLM (default: 1)"
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow Python code from the model folder (no supported model needs it: EXAONE 3.x runs "
        "without); off by default",
    )


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default: 0.0)")
    group.add_argument("--min-tokens", type=int, default=8, help="tokens before EOS is allowed (default: 8)")
    group.add_argument("--max-tokens", type=int, default=64, help="most tokens per answer (default: 64)")
    group.add_argument("--seed", type=int, default=0, help="sampling seed when temperature > 0 (default: 0)")


def add_timing_options(parser: argparse.ArgumentParser, *, warmup: int, repeats: int) -> None:
    group = parser.add_argument_group("timing")
    group.add_argument(
        "--warmup", type=int, default=warmup, help=f"untimed batches before timing (default: {warmup})"
    )
    group.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        help=f"timed batches; the median is reported (default: {repeats})",
    )


def sampling_from_args(args: argparse.Namespace) -> SamplingConfig:
    if args.temperature < 0:
        raise CompressError(
            f"--temperature {args.temperature} is negative", "use 0 for greedy or a positive value"
        )
    if args.max_tokens < 1:
        raise CompressError(f"--max-tokens {args.max_tokens} is below 1", "ask for at least one token")
    if not 0 <= args.min_tokens <= args.max_tokens:
        raise CompressError(
            f"--min-tokens {args.min_tokens} is not between 0 and --max-tokens {args.max_tokens}",
            "pick 0 <= --min-tokens <= --max-tokens",
        )
    return SamplingConfig(
        temperature=args.temperature, min_tokens=args.min_tokens, max_tokens=args.max_tokens, seed=args.seed
    )


def check_engine_args(args: argparse.Namespace) -> None:
    if args.tensor_parallel_size < 1:
        raise CompressError(f"--tensor-parallel-size {args.tensor_parallel_size} is below 1", "use 1 or more")
    if getattr(args, "repeats", 1) < 1 or getattr(args, "warmup", 0) < 0:
        raise CompressError(
            "--repeats must be at least 1 and --warmup at least 0", "e.g. --warmup 1 --repeats 3"
        )
