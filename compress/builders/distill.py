"""Logit distillation: the student (the input folder) learns to match a teacher's next-token distribution.

The teacher is the matrix's base unless the step names one (``teacher = "tiny-exaone4-teacher"`` or a
folder path): a larger model of the student's family, of any depth, whose tokenizer must be the student's
(:mod:`compress.builders.teacher` refuses another, with the reason). The manifest records the teacher's name,
path and fingerprint.

Loss: forward KL(teacher || student) on temperature-softened distributions, times T², averaged over the
*response* tokens only (the answer after the chat template's assistant header), computed in float32.
Data: the project's training prompts (never the gate's) with the teacher's own greedy answers, or a text
file. Every ``holdout_every``-th sequence is kept out of training, and the KD loss before and after is
measured on those held-out sequences, so the manifest reports generalisation, not memorisation. The
teacher's log-probabilities are computed once before training (the teacher never changes), so each step
costs one student forward and backward. AdamW, constant or linearly decaying lr, gradient clipping.
``train_layers = "around-cut"`` trains only the decoder layers beside the gap a prune step left (the rest
frozen): on SmolLM2 l29 that generalised to held-out prompts where training every parameter overfitted.
Runs on CUDA when there is a GPU, else on the CPU (the local models). The result is a normal folder.

Recipe::

    [step.distill]
    # teacher = "tiny-exaone4-teacher"   # default: the base
    steps = 24           # optimizer steps of batch_size sequences
    batch_size = 16
    lr = 3e-4
    lr_schedule = "linear"
    temperature = 1.0
    train_layers = "around-cut"
    holdout_every = 8    # 1 sequence in 8 is held out to measure the KD loss
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compress.builders.common import (
    BuildContext,
    Sample,
    StepParams,
    base_answers,
    carry_side_files,
    decoder_layers,
    link_model_files,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    save_like,
    text_file_samples,
)
from compress.core.errors import CompressError
from compress.folders.checks import read_config


class DistillParams(StepParams):
    teacher: str | None = Field(
        default=None,
        description="the model to learn from: a local model name (python -m compress make-models) or a model "
        "folder, larger or of another depth, with the student's tokenizer; unset: the matrix's base",
    )
    steps: int = Field(default=60, ge=1, description="optimizer steps")
    batch_size: int = Field(default=8, ge=1, description="sequences per step")
    lr: float = Field(default=5e-5, gt=0)
    lr_schedule: Literal["constant", "linear"] = Field(
        default="constant", description="linear: decays from lr to 0 over the steps (the last steps settle)"
    )
    weight_decay: float = Field(default=0.0, ge=0)
    temperature: float = Field(default=1.0, gt=0, description="softens both distributions; loss is scaled by T^2")
    grad_clip: float = Field(default=1.0, gt=0)
    max_answer_tokens: int = Field(default=64, ge=1, description="length of the base's answers to learn from")
    text_file: str | None = Field(default=None, description="train on this text file instead of the answers")
    text_chunk_tokens: int = Field(default=256, ge=2, description="sequence length for text_file")
    train_layers: Literal["all", "around-cut"] | tuple[int, int] = Field(
        default="all",
        description=(
            "which parameters learn: all; around-cut: the two decoder layers on each side of the layers a "
            "prune step removed (read from the input's manifest), the rest frozen; [lo, hi]: those layers"
        ),
    )
    holdout_every: int = Field(
        default=0,
        ge=0,
        description="hold every n-th sequence out of training and measure the KD loss on those; 0: measure on "
        "the training sequences",
    )
    seed: int = 0
    device: str = "auto"
    save_dtype: Literal["input", "float32", "bfloat16"] = Field(
        default="input", description="dtype of the saved weights; input: the same as the student's folder"
    )


def name_for(parent: str, params: DistillParams) -> str:
    return f"{parent}-distilled"


def run(src: Path, out: Path, params: DistillParams, ctx: BuildContext) -> dict[str, Any]:
    import torch

    from compress.builders import teacher as teachers

    teacher_dir = ctx.teacher_dir(params.teacher)
    tokenizer = load_tokenizer(src, trust_remote_code=ctx.trust_remote_code)
    if params.teacher is not None:
        teacher_tokenizer = load_tokenizer(teacher_dir, trust_remote_code=ctx.trust_remote_code)
        teachers.check_teacher(src, teacher_dir, tokenizer, teacher_tokenizer)
    teacher_info = teachers.describe(teacher_dir, named=params.teacher, base_dir=ctx.base_dir)
    if same_weights(src, teacher_dir):
        # KL(teacher || student) is exactly 0 with zero gradients: training could not change a weight.
        link_model_files(src, out)
        reason = "the student has the teacher's weights (distilled from itself): KD loss 0, nothing to learn"
        ctx.log(f"distill: skipped, {reason}")
        return {"teacher": teacher_info, "skipped": reason, "loss_curve": []}
    device = pick_device(params.device)
    torch.manual_seed(params.seed)
    if params.text_file:
        samples = text_file_samples(Path(params.text_file), tokenizer, max_tokens=params.text_chunk_tokens)
        data = f"text file {params.text_file}"
    else:
        samples = base_answers(
            ctx, max_new_tokens=params.max_answer_tokens, device=params.device, model_dir=teacher_dir
        )
        data = f"training prompts with the {'base' if teacher_info['is_base'] else 'teacher'}'s greedy answers"
    samples = [s for s in samples if len(s.input_ids) > s.loss_start]
    if not samples:
        raise CompressError("distillation has no response tokens to learn from", "check the training data")
    pad_id = int(tokenizer.pad_token_id or 0)
    train_set, held_out = split_held_out(samples, params.holdout_every)
    measured_on = "held-out" if held_out else "training"
    measure = held_out or train_set

    started = time.perf_counter()
    teacher = load_causal_lm(teacher_dir, dtype="float32", device=device, trust_remote_code=ctx.trust_remote_code)
    targets = teacher_log_probs(teacher, train_set, params, pad_id=pad_id, device=device)
    measure_targets = (
        teacher_log_probs(teacher, held_out, params, pad_id=pad_id, device=device) if held_out else targets
    )
    del teacher
    teacher_seconds = time.perf_counter() - started

    student = load_causal_lm(src, dtype="float32", device=device, trust_remote_code=ctx.trust_remote_code)
    trained = freeze_outside(student, layer_range(src, params.train_layers, len(decoder_layers(student))))
    ctx.log(f"distill: training {trained} on {len(train_set)} sequences from teacher {teacher_info['name']}")
    before = evaluate(student, measure, measure_targets, params, pad_id=pad_id, device=device)
    ctx.log(f"distill: KD loss on {len(measure)} {measured_on} sequences before training: {before:.4f}")
    started = time.perf_counter()
    curve = train(student, train_set, targets, params, pad_id=pad_id, device=device)
    train_seconds = time.perf_counter() - started
    after = evaluate(student, measure, measure_targets, params, pad_id=pad_id, device=device)
    ctx.log(f"distill: {measured_on} KD loss after {params.steps} steps: {after:.4f} (was {before:.4f})")

    save_dtype = _save_dtype(params.save_dtype, read_config(src))
    student.to(getattr(torch, save_dtype))
    student.config.use_cache = True
    layout = save_like(student, out, src, safe_serialization=True)
    carry_side_files(src, out)
    return {
        "teacher": teacher_info,
        "data": data,
        "sequences": len(train_set),
        "held_out_sequences": len(held_out),
        "response_tokens": sum(len(s.input_ids) - s.loss_start for s in train_set),
        "device": device,
        "saved_dtype": save_dtype,
        "saved_layout": layout,
        "trained": trained,
        "kd_loss_measured_on": measured_on,
        "kd_loss_before": round(before, 6),
        "kd_loss_after": round(after, 6),
        "loss_curve": [round(x, 6) for x in curve],
        "teacher_seconds": round(teacher_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "threads": torch.get_num_threads() if device == "cpu" else None,
    }


def split_held_out(samples: list[Sample], every: int) -> tuple[list[Sample], list[Sample]]:
    """(training, held-out): every ``every``-th sequence is held out (none when ``every`` is 0, or when
    holding out would leave nothing to train on)."""
    if every <= 0 or len(samples) < 2:
        return samples, []
    held = [s for i, s in enumerate(samples) if i % every == every - 1]
    kept = [s for i, s in enumerate(samples) if i % every != every - 1]
    return (kept, held) if held and kept else (samples, [])


def layer_range(src: Path, spec: str | tuple[int, int], n_layers: int) -> tuple[int, int] | None:
    """The decoder layers to train (inclusive), or None for every parameter.

    ``around-cut`` reads which layers the prune step that made ``src`` dropped and picks two layers on each
    side of each cut (for SmolLM2 without layer 14: new layers 12..15). Training a few layers next to the
    gap learns as much per step as training everything (held-out KD loss, measured) at lower cost, because
    gradients stop at the lowest trained layer.
    """
    if spec == "all":
        return None
    if spec == "around-cut":
        from compress.folders.atomic import read_manifest

        manifest = read_manifest(src) or {}
        prunes = [s.get("result", {}) for s in manifest.get("steps", []) if s.get("step") == "prune"]
        if not prunes or "dropped" not in prunes[-1]:
            return None
        dropped = prunes[-1]["dropped"]
        # A cut before old layer d sits before new layer (number of kept layers below d).
        positions = [d - sum(1 for x in dropped if x < d) for d in dropped]
        return max(0, min(positions) - 2), min(n_layers - 1, max(positions) + 1)
    lo, hi = spec
    if not 0 <= lo <= hi < n_layers:
        raise CompressError(
            f"distill train_layers [{lo}, {hi}] is outside the model's {n_layers} layers",
            f"use 0 <= lo <= hi <= {n_layers - 1}",
        )
    return lo, hi


def freeze_outside(model: Any, span: tuple[int, int] | None) -> str:
    """Freeze every parameter outside decoder layers ``span``; returns a description for the manifest."""
    if span is None:
        return "all parameters"
    layers = decoder_layers(model)
    for param in model.parameters():
        param.requires_grad = False
    for index in range(span[0], span[1] + 1):
        for param in layers[index].parameters():
            param.requires_grad = True
    return f"decoder layers {span[0]}..{span[1]} (the rest frozen)"


def same_weights(a: Path, b: Path) -> bool:
    """True when both folders hold byte-identical safetensors files (by content hash)."""
    from compress.folders.manifest import weights_digest

    return a.resolve() == b.resolve() or weights_digest(a) == weights_digest(b)


def _batch(samples: list[Sample], pad_id: int, device: str) -> tuple[Any, Any, Any, Any]:
    """Right-padded ids and mask, and the (row, position) pairs whose logits predict a response token."""
    import torch

    width = max(len(s.input_ids) for s in samples)
    ids = torch.tensor([list(s.input_ids) + [pad_id] * (width - len(s.input_ids)) for s in samples], device=device)
    mask = torch.tensor([[1] * len(s.input_ids) + [0] * (width - len(s.input_ids)) for s in samples], device=device)
    rows, cols = [], []
    for r, s in enumerate(samples):
        # logits at position p predict token p + 1: the response tokens loss_start..end-1
        positions = range(s.loss_start - 1, len(s.input_ids) - 1)
        rows.extend([r] * len(positions))
        cols.extend(positions)
    return ids, mask, torch.tensor(rows, device=device), torch.tensor(cols, device=device)


def response_logits(model: Any, samples: list[Sample], pad_id: int, device: str) -> Any:
    """float32 logits at the positions that predict response tokens, [tokens, vocab]: the lm_head runs
    only there (the prompt's positions would be discarded anyway)."""
    ids, mask, rows, cols = _batch(samples, pad_id, device)
    hidden = model.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    return model.get_output_embeddings()(hidden[rows, cols]).float()


def teacher_log_probs(teacher: Any, samples: list[Sample], params: DistillParams, *, pad_id: int, device: str):
    """Per sequence, the teacher's log-softmax(logits / T) at its response positions (float32)."""
    import torch
    from tqdm import tqdm

    teacher.eval()
    out = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(samples), params.batch_size), desc="distill: teacher targets", unit="batch"):
            chunk = samples[start : start + params.batch_size]
            logp = torch.log_softmax(response_logits(teacher, chunk, pad_id, device) / params.temperature, dim=-1)
            sizes = [len(s.input_ids) - s.loss_start for s in chunk]
            out.extend(t.clone() for t in torch.split(logp, sizes))
    return out


def kd_loss(student_logits: Any, teacher_logp: Any, temperature: float) -> Any:
    """Forward KL(teacher || student), mean over tokens, scaled by T² (comparable gradients across T)."""
    import torch
    import torch.nn.functional as F

    student_logp = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = F.kl_div(student_logp, teacher_logp, log_target=True, reduction="sum")
    return kl / teacher_logp.shape[0] * temperature**2


def evaluate(model: Any, samples: list[Sample], targets: list, params: DistillParams, *, pad_id: int, device: str):
    """KD loss over every sequence (token-weighted), without gradients: the before/after measure."""
    import torch

    model.eval()
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(samples), params.batch_size):
            chunk = samples[start : start + params.batch_size]
            target = torch.cat(targets[start : start + params.batch_size])
            loss = kd_loss(response_logits(model, chunk, pad_id, device), target, params.temperature)
            total += float(loss) * target.shape[0]
            tokens += target.shape[0]
    return total / tokens


def train(model: Any, samples: list[Sample], targets: list, params: DistillParams, *, pad_id: int, device: str):
    """AdamW over shuffled batches (each epoch a new order, seeded), constant or linearly decaying lr.
    Returns the loss of every step."""
    import torch
    from tqdm import tqdm

    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    decay = (lambda step: 1.0 - step / params.steps) if params.lr_schedule == "linear" else (lambda step: 1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    rng = random.Random(params.seed)
    order: list[int] = []
    curve = []
    bar = tqdm(range(params.steps), desc="distill", unit="step")
    for _ in bar:
        if len(order) < params.batch_size:
            epoch = list(range(len(samples)))
            rng.shuffle(epoch)
            order.extend(epoch)
        picked, order = order[: params.batch_size], order[params.batch_size :]
        chunk = [samples[i] for i in picked]
        target = torch.cat([targets[i] for i in picked])
        loss = kd_loss(response_logits(model, chunk, pad_id, device), target, params.temperature)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise CompressError(f"distillation loss became {value}", "lower lr in the recipe's [step.distill]")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, params.grad_clip)
        optimizer.step()
        schedule.step()
        curve.append(value)
        bar.set_postfix(loss=f"{value:.4f}")
        tqdm.write(f"distill step {len(curve)}/{params.steps}: KD loss {value:.4f}")
    model.eval()
    return curve


def _save_dtype(requested: str, config: dict) -> str:
    if requested != "input":
        return requested
    dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    return str(dtype).replace("torch.", "")
