"""AWQ W4A16 through llm-compressor: 4-bit grouped weights, 16-bit activations, saved compressed for vLLM.

As in llm-compressor's own recipes, ``AWQModifier`` only rescales (activation-aware smoothing, searched on
calibration data) and the following ``QuantizationModifier`` quantizes. The mappings (which norm or
projection is smoothed against which projections) come from llm-compressor's registry by model class: it has
its own EXAONE 4 entry (EXAONE 4 is post-norm, so only v_proj->o_proj and up_proj->down_proj) and Llama's.
EXAONE 3.x has none, and needs none: it is loaded as the Llama network it is (:mod:`compress.folders.exaone3`)
and written back in its own layout. AWQ never runs on a model its mappings do not fit: for a class without a
registry entry llm-compressor falls back to the Llama names (``input_layernorm``, ``q_proj``, ...), and where
they match nothing it would silently smooth nothing (plain round-to-nearest under AWQ's name).
:func:`resolve_mappings` checks, before any calibration, that every mapping matches once per decoder layer,
and fails with what did not match. Calibration data: the training prompts with the base's answers, rendered
through the chat template and passed pre-tokenized as a local ``datasets.Dataset``. On hosts without an
accelerator the upstream ``pin_memory`` crash is worked around (:mod:`compress.builders.cpu_workaround`).

Recipe::

    [step.awq]
    group_size = 128     # must divide every quantized layer's input width (SmolLM2's 576: use 64)
    num_samples = 42     # calibration sequences
    n_grid = 20          # AWQ's scale search grid: its cost grows linearly
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from compress.builders.common import (
    BuildContext,
    StepParams,
    base_answers,
    carry_side_files,
    decoder_layers,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    save_like,
)
from compress.core.errors import CompressError
from compress.folders.checks import read_config


class AwqParams(StepParams):
    bits: Literal[4] = 4
    group_size: int = Field(
        default=128, ge=1, description="weights per scale; must divide each layer's input width"
    )
    symmetric: bool = Field(
        default=False, description="False: asymmetric (zero points), as AWQ is usually run"
    )
    num_samples: int = Field(
        default=42, ge=1, description="calibration sequences (training prompts + answers)"
    )
    max_seq_length: int = Field(default=128, ge=8)
    n_grid: int = Field(default=20, ge=3, description="points in AWQ's scale search (at least 3)")
    duo_scaling: bool | Literal["both"] = True
    ignore: tuple[str, ...] = ("lm_head",)
    max_answer_tokens: int = Field(default=64, ge=1)
    calibration_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="auto: float32 on the CPU (fast and exact there), the input's dtype on CUDA",
    )
    pipeline: str | None = Field(
        default=None, description="llm-compressor calibration pipeline; None: its default"
    )

    @model_validator(mode="after")
    def _grid_fits_duo_scaling(self) -> AwqParams:
        # llm-compressor splits the grid in two for duo_scaling="both"; fewer than 4 points divide by zero.
        if self.duo_scaling == "both" and self.n_grid < 4:
            raise ValueError("n_grid must be at least 4 with duo_scaling = 'both'")
        return self


def name_for(parent: str, params: AwqParams) -> str:
    return f"{parent}-llmc-awq"


def resolve_mappings(model: Any) -> tuple[list, str, list[str]]:
    """(the AWQ mappings llm-compressor would use for ``model``, where they come from, what AWQ will skip),
    checked to fit: each mapping's smooth and balance layers must be found once in every decoder layer. Raises
    before calibration otherwise (llm-compressor itself would skip what it cannot match and quantize without
    smoothing). Skipped by design, and reported: v_proj -> o_proj where grouped-query attention makes v_proj
    narrower than o_proj's input (llm-awq's rule, which llm-compressor keeps)."""
    from compressed_tensors.utils import match_modules_set
    from llmcompressor.modifiers.transform.awq import AWQ_MAPPING_REGISTRY
    from llmcompressor.modifiers.transform.awq.dynamic_mappings import get_layer_mappings_from_model

    name = type(model).__name__
    mappings = get_layer_mappings_from_model(model)
    source = (
        f"llmcompressor AWQ_MAPPING_REGISTRY[{name!r}]"
        if name in AWQ_MAPPING_REGISTRY
        else f"llmcompressor's default (Llama) mappings: {name} has no registry entry"
    )
    layers = len(decoder_layers(model))
    problems, skipped = [], []
    for mapping in mappings:
        label = f"{mapping.smooth_layer} -> {', '.join(mapping.balance_layers)}"
        try:
            sets = list(match_modules_set(model, (mapping.smooth_layer, *mapping.balance_layers)))
        except ValueError as err:
            problems.append(f"{label}: {err}")
            continue
        if len(sets) != layers:
            problems.append(f"{label} matches {len(sets)} of {layers} decoder layers")
            continue
        narrower = sum(1 for smooth, *balance in sets if _narrower(smooth[0], [b for g in balance for b in g]))
        if narrower:
            skipped.append(f"{label} in {narrower} of {layers} layers (grouped-query attention: shapes differ)")
    if problems:
        raise CompressError(
            f"AWQ has no mapping that fits {name} ({source}): " + "; ".join(problems),
            "use a Llama-layout, EXAONE 4 or EXAONE 3.x model (3.x is loaded as Llama), or add an entry for "
            f"{name} to llm-compressor's AWQ_MAPPING_REGISTRY",
        )
    return list(mappings), source, skipped


def _narrower(smooth: Any, balance: list) -> bool:
    """A linear smooth layer whose output is not its linear balance layers' input (v_proj -> o_proj, GQA)."""
    import torch

    linear = torch.nn.Linear
    if not isinstance(smooth, linear):
        return False
    return any(isinstance(b, linear) and b.in_features != smooth.out_features for b in balance)


def check_group_size(model: Any, group_size: int, ignore: tuple[str, ...]) -> None:
    """llm-compressor refuses a group size that does not divide a layer's input width; say so up front."""
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] not in ignore and name not in ignore:
            if module.in_features % group_size:
                divisors = [g for g in (128, 64, 32, 16) if module.in_features % g == 0]
                raise CompressError(
                    f"AWQ group_size {group_size} does not divide {name}'s input width {module.in_features}",
                    f"set group_size in the recipe's [step.awq] to one of {divisors or [1]}",
                )


def scheme(params: AwqParams) -> dict:
    """compressed-tensors config group for W4A16: 4-bit int weights in groups, activations untouched."""
    return {
        "group_0": {
            "targets": ["Linear"],
            "weights": {
                "num_bits": params.bits,
                "type": "int",
                "symmetric": params.symmetric,
                "strategy": "group",
                "group_size": params.group_size,
            },
        }
    }


def run(src: Path, out: Path, params: AwqParams, ctx: BuildContext) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    from compress.builders.cpu_workaround import cpu_only_pin_memory_fix

    config = read_config(src)
    if config.get("quantization_config"):
        raise CompressError(
            f"{src} is already quantized", "apply awq to an unquantized variant (awq goes last)"
        )
    arch = (config.get("architectures") or ["?"])[0]
    device = pick_device("auto")
    input_dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32").replace("torch.", "")
    dtype = params.calibration_dtype
    if dtype == "auto":
        dtype = input_dtype if device == "cuda" else "float32"

    tokenizer = load_tokenizer(src, trust_remote_code=ctx.trust_remote_code)
    model = load_causal_lm(src, dtype=dtype, device="cpu", trust_remote_code=ctx.trust_remote_code)
    check_group_size(model, params.group_size, params.ignore)
    mappings, mapping_source, skipped = resolve_mappings(model)  # fails here, before any calibration

    samples = base_answers(ctx, max_new_tokens=params.max_answer_tokens, limit=params.num_samples)
    rows = [list(s.input_ids[: params.max_seq_length]) for s in samples]
    dataset = Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]})
    recipe = [
        AWQModifier(mappings=mappings, n_grid=params.n_grid, duo_scaling=params.duo_scaling),
        QuantizationModifier(targets=["Linear"], ignore=list(params.ignore), config_groups=scheme(params)),
    ]
    ctx.log(
        f"awq: calibrating {arch} (as {type(model).__name__}) on {len(rows)} sequences, n_grid {params.n_grid}, "
        f"mappings {mapping_source}"
    )
    started = time.perf_counter()
    extra = {"pipeline": params.pipeline} if params.pipeline else {}
    with cpu_only_pin_memory_fix() as patched:
        oneshot(
            model=model,
            processor=tokenizer,
            dataset=dataset,
            recipe=recipe,
            num_calibration_samples=len(rows),
            max_seq_length=params.max_seq_length,
            shuffle_calibration_samples=False,
            trust_remote_code_model=ctx.trust_remote_code,
            **extra,
        )
    seconds = time.perf_counter() - started
    if dtype != input_dtype:
        model.to(getattr(torch, input_dtype))
    layout = save_like(model, out, src, save_compressed=True)
    carry_side_files(src, out)
    saved = read_config(out)
    if not saved.get("quantization_config"):
        raise CompressError(
            "llm-compressor saved no quantization_config",
            "check the installed llmcompressor/compressed-tensors",
        )
    return {
        "scheme": f"W{params.bits}A16 {'sym' if params.symmetric else 'asym'} group {params.group_size}",
        "mappings": mapping_source,
        "mapped_as": type(model).__name__,
        "mappings_skipped": skipped,
        "saved_layout": layout,
        "calibration": {
            "sequences": len(rows),
            "tokens": sum(len(r) for r in rows),
            "data": "training prompts with the base's answers, chat template, never the gate's prompts",
            "dtype": dtype,
        },
        "cpu_pin_memory_workaround": patched,
        "oneshot_seconds": round(seconds, 2),
        "quant_method": saved["quantization_config"].get("quant_method"),
        "format": saved["quantization_config"].get("format"),
    }
