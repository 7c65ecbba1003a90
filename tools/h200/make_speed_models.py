"""On the H200: EXAONE-4.0-1.2B-shaped models with seeded random bf16 weights, saved as safetensors, for the
speed gate's noise experiment (issue 8). Answers are meaningless; only speed is compared.

  base    30 layers    good  hard links to base (same model: must pass every time)
  slow    39 layers: 1.3x the layers, but on the H200 only ~1.07x slower end to end at batch 10 (host-bound)
  slow2x  60 layers: ~1.28x slower end to end at batch 10 (measured 2026-11-29): must fail every time
(29 layers, W4A16 and both are timed by `python -m compress bench` with dummy weights: the same speed.)

usage: python tools/h200/make_speed_models.py ROOT
"""

import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from compress.bench.dummy_models import ensure_tokenizer, model_config, write_variant
from compress.local_models.broken import link_copy

root = Path(sys.argv[1])
tokenizer = ensure_tokenizer(102400)
for name, layers in (("base", 30), ("slow", 39), ("slow2x", 60)):
    config = model_config("exaone4-1.2b", "base")
    config["num_hidden_layers"] = layers
    config["layer_types"] = ["full_attention"] * layers
    write_variant(root / name, config, tokenizer)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(root / name), dtype=torch.bfloat16)
    model.save_pretrained(root / name)
    del model
    torch.cuda.empty_cache()
    print(name, layers, "layers ->", root / name, flush=True)
link_copy(root / "base", root / "good")
print("good -> hard links to base")
