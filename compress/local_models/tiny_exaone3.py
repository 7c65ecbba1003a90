"""A tiny EXAONE-3.5-architecture chat model, made here, for the EXAONE 3.x paths of the builders and the gate.

No EXAONE 3.x checkpoint can be fetched, and none was ever loaded by this project before this model. It has
what makes EXAONE 3.x its own case at a size that trains in seconds on two CPU cores:

- ``ExaoneForCausalLM`` weights under ``transformer.h.N`` (``ln_1``, ``attn.attention.{q,k,v,out}_proj``,
  ``ln_2``, ``mlp.c_fc_0/c_fc_1/c_proj``), and a config.json with the keys EXAONE-3.5's config class writes
  (``num_layers``, ``layer_norm_epsilon``, ``activation_function``, ``embed_dropout``, ``rope_scaling`` of type
  llama3, an ``auto_map`` naming remote code that is not in the folder: nothing here may need it).
- 30 decoder layers like EXAONE-3.5-2.4B (so ``compressed-l29`` means one layer of 30 dropped), tied
  embeddings like 2.4B, head_dim 64 (vLLM's CPU attention rejects smaller heads), 2 heads / 1 KV head.
- EXAONE-3.5's chat template (an empty system turn first, ``[|user|]...\\n``, ``[|assistant|]``).
- The tiny EXAONE-4's tokenizer recipe (byte-level BPE trained on the project's training text, EXAONE's
  special tokens, EOS ``[|endofturn|]``) and its corpus and training loop, for fewer steps.

It is trained as the equivalent ``LlamaForCausalLM`` (:mod:`compress.folders.exaone3`: the same network
under other names) and saved in the EXAONE 3 layout; everything is seeded and single-threaded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path

from compress.core import paths
from compress.folders import exaone3
from compress.folders.atomic import atomic_folder, folder_lock, read_manifest
from compress.local_models import registry, tiny_exaone4

NAME = "tiny-exaone3"

# EXAONE-3.5's template, as its tokenizer_config.json carries it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}{{ '[|system|][|endofturn|]\\n' }}{% endif %}"
    "{{ '[|' + message['role'] + '|]' + message['content'] }}"
    "{% if message['role'] == 'user' %}{{ '\\n' }}{% else %}{{ '[|endofturn|]\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}"
)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights: change a field and the model (and its hash) changes."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 30
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    max_position_embeddings: int = 32768
    rope_theta: float = 1000000.0
    rope_scaling_factor: float = 8.0
    """EXAONE-3.5's llama3 RoPE scaling (factor 8 over 8192 original positions): it changes the rotary
    frequencies at every position, so an engine or a conversion that dropped it would score differently."""
    seed: int = 0
    steps: int = 100
    """About 30 s of one core; the loss falls from ~25 to ~1.8 and greedy answers become words."""
    batch_size: int = 4
    block_size: int = 64
    learning_rate: float = 1e-2
    warmup_steps: int = 20
    embed_std: float = 0.2
    residual_scale: float = 0.1
    """Initial scale of every o_proj and down_proj (what each layer adds to the residual stream)."""
    attn_norm_scale: float = 0.1
    """Initial weight of every ln_1 (the attention input's RMSNorm). At this learning rate a pre-norm stack
    without EXAONE-4's QK-norm stalled near the unigram loss (~5 after 80 steps, measured); small attention
    inputs keep its logits bounded early, as QK-norm does, and training gets to ~1.8 in 100 steps."""


log = logging.getLogger(__name__)


def default_dir() -> Path:
    return paths.sources_dir() / NAME


def exaone_config(recipe: Recipe, tokenizer) -> dict:
    """config.json as EXAONE-3.5's configuration class writes it (the keys of EXAONE-3.5-2.4B-Instruct's)."""
    return {
        "activation_function": "silu",
        "architectures": [exaone3.EXAONE3],
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_exaone.ExaoneConfig",
            "AutoModelForCausalLM": "modeling_exaone.ExaoneForCausalLM",
            "AutoModelForSequenceClassification": "modeling_exaone.ExaoneForSequenceClassification",
        },
        "bos_token_id": tokenizer.bos_token_id,
        "embed_dropout": 0.0,
        "eos_token_id": tokenizer.eos_token_id,
        "hidden_size": recipe.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": recipe.intermediate_size,
        "layer_norm_epsilon": 1e-05,
        "max_position_embeddings": recipe.max_position_embeddings,
        "model_type": "exaone",
        "num_attention_heads": recipe.num_attention_heads,
        "num_key_value_heads": recipe.num_key_value_heads,
        "num_layers": recipe.num_layers,
        "pad_token_id": tokenizer.pad_token_id,
        "rope_scaling": {
            "factor": recipe.rope_scaling_factor,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "rope_theta": recipe.rope_theta,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.43.0",
        "use_cache": True,
        "vocab_size": len(tokenizer),
    }


def build_model(recipe: Recipe | None = None) -> tuple:
    """(tokenizer, EXAONE config, trained float32 LlamaForCausalLM, training summary), all seeded."""
    import time

    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    recipe = recipe or Recipe()
    chats, texts = tiny_exaone4.corpus()
    train_recipe = tiny_exaone4.Recipe(
        seed=recipe.seed,
        steps=recipe.steps,
        batch_size=recipe.batch_size,
        block_size=recipe.block_size,
        learning_rate=recipe.learning_rate,
        warmup_steps=recipe.warmup_steps,
    )
    with tiny_exaone4.deterministic():
        tokenizer = tiny_exaone4.train_tokenizer([f"{u}\n{a}" for u, a in chats] + texts, recipe.vocab_size)
        tokenizer.chat_template = CHAT_TEMPLATE
        config = exaone_config(recipe, tokenizer)
        llama = exaone3.to_llama_config(config)
        llama.pop(exaone3.STASH)
        torch.manual_seed(recipe.seed)
        model = LlamaForCausalLM(LlamaConfig.from_dict(llama))
        with torch.no_grad():
            model.model.embed_tokens.weight.normal_(0.0, recipe.embed_std)
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.mul_(recipe.residual_scale)
                layer.mlp.down_proj.weight.mul_(recipe.residual_scale)
                layer.input_layernorm.weight.fill_(recipe.attn_norm_scale)
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        examples = tiny_exaone4.encode_examples(tokenizer, chats, texts)
        started = time.perf_counter()
        losses = tiny_exaone4.train(model, examples, train_recipe) if recipe.steps else []
        seconds = time.perf_counter() - started
    summary = {
        "chats": len(chats),
        "texts": len(texts),
        "tokens": sum(len(e) for e in examples),
        "steps": recipe.steps,
        "first_loss": round(losses[0], 4) if losses else None,
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4) if losses else None,
        "train_seconds": round(seconds, 1),
    }
    return tokenizer, config, model, summary


def make_tiny_exaone3(dest: Path | None = None, force: bool = False, recipe: Recipe | None = None) -> Path:
    """Make the tiny EXAONE-3 folder at ``dest`` (default: sources/tiny-exaone3) and return its path.

    Reused as it is when complete and made from the same recipe, unless ``force``. The folder holds float32
    safetensors in the EXAONE 3 layout, config.json as EXAONE-3.5 writes it, the tokenizer,
    chat_template.jinja, generation_config.json (EOS ``[|endofturn|]``) and manifest.json.
    """
    recipe = recipe or Recipe()
    dest = Path(dest) if dest is not None else default_dir()
    with folder_lock(dest):
        existing = read_manifest(dest)
        if not force and existing is not None and existing.get("recipe") == dataclasses.asdict(recipe):
            return dest
        tokenizer, config, model, summary = build_model(recipe)
        log.info(
            "%s: trained %d steps in %.1f s, loss %s -> %s",
            NAME,
            summary["steps"],
            summary["train_seconds"],
            summary["first_loss"],
            summary["final_loss"],
        )
        info = {"name": NAME, "recipe": dataclasses.asdict(recipe), "train": summary}
        scratch_dir = dict(dir=dest.parent, prefix=f".{NAME}-scratch-")
        with atomic_folder(dest, info=info) as tmp, tempfile.TemporaryDirectory(**scratch_dir) as scratch:
            model.save_pretrained(scratch)
            tokenizer.save_pretrained(scratch)
            info["layout"] = exaone3.convert_folder(Path(scratch), tmp, to="exaone3")
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            info["check"] = registry.check_answer(
                tmp,
                model="tiny EXAONE-3 model",
                fix="rebuild with the default Recipe; a changed recipe may have broken training",
            )
    return dest
