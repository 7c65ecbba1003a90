"""Which decoder layers matter least: Block Influence, measured on calibration text.

Block Influence of layer i (ShortGPT, Men et al. 2024) is ``1 - cos(x_i, y_i)`` averaged over tokens, where
``x_i`` is the hidden state entering the layer and ``y_i`` the one leaving it. A layer that barely turns
the residual stream (score near 0) can go with the least damage. The scores are printed and saved as
``block_influence.json`` in the pruned folder, so the choice can be checked later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compress.builders.common import Sample, decoder_layers, load_causal_lm, pick_device

SCORES_FILE = "block_influence.json"
DEFINITION = "1 - cos(hidden state entering layer i, hidden state leaving it), mean over calibration tokens"


def block_influence(
    model_dir: Path,
    samples: Sequence[Sample],
    *,
    device: str = "auto",
    batch_size: int = 8,
    trust_remote_code: bool = False,
    pad_id: int = 0,
) -> list[float]:
    """One score per decoder layer, in layer order (float32 forward passes, no gradients)."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    device = pick_device(device)
    model = load_causal_lm(model_dir, dtype="float32", device=device, trust_remote_code=trust_remote_code)
    model.eval()
    layers = decoder_layers(model)
    sums = torch.zeros(len(layers), dtype=torch.float64)
    count = 0
    mask_holder: dict[str, Any] = {}

    def hook(index: int):
        def fn(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            cos = F.cosine_similarity(h_in.float(), h_out.float(), dim=-1)
            mask = mask_holder["mask"]
            sums[index] += ((1.0 - cos) * mask).sum().double().cpu()

        return fn

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        for start in tqdm(range(0, len(samples), batch_size), desc="block influence", unit="batch"):
            chunk = [list(s.input_ids) for s in samples[start : start + batch_size]]
            width = max(len(c) for c in chunk)
            ids = torch.tensor([c + [pad_id] * (width - len(c)) for c in chunk], device=device)
            mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in chunk], device=device)
            mask_holder["mask"] = mask.float()
            with torch.inference_mode():
                model(input_ids=ids, attention_mask=mask, use_cache=False)
            count += int(mask.sum())
    finally:
        for handle in handles:
            handle.remove()
    del model
    return [float(s / max(count, 1)) for s in sums]


def least_important(scores: Sequence[float], count: int) -> list[int]:
    """Indices of the ``count`` lowest scores (ties: the later layer goes first), sorted ascending."""
    order = sorted(range(len(scores)), key=lambda i: (scores[i], -i))
    return sorted(order[:count])


def format_scores(scores: Sequence[float], dropped: Sequence[int] = ()) -> str:
    """A table, one layer a line, the dropped ones marked: what the build prints."""
    lines = ["layer  block influence"]
    for i, score in enumerate(scores):
        mark = "  <- dropped" if i in dropped else ""
        lines.append(f"{i:5d}  {score:.4f}{mark}")
    return "\n".join(lines)


def save_scores(out_dir: Path, scores: Sequence[float], dropped: Sequence[int], *, samples: int) -> Path:
    path = out_dir / SCORES_FILE
    payload = {
        "metric": "block_influence",
        "definition": DEFINITION,
        "calibration": f"{samples} training prompts with the base's answers (never the gate's prompts)",
        "scores": {str(i): round(s, 6) for i, s in enumerate(scores)},
        "dropped": list(dropped),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path
