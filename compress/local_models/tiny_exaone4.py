"""A tiny EXAONE-4 chat model, made here from nothing but packaged text, for the EXAONE-specific paths.

No real EXAONE weights can be fetched, yet the builders and engines must be tested on what is EXAONE-only:
``Exaone4ForCausalLM``'s config fields and ``layer_types``, its post-norm layers (llm-compressor's EXAONE-4
AWQ mapping), vLLM's Exaone4 model, and EXAONE's chat format and special tokens. This model has them all at a
size that trains in under a minute on two CPU cores:

- 30 decoder layers, like EXAONE-4.0-1.2B, so ``compressed-l29`` means "one of 30 layers dropped" here too;
  head_dim 64 (vLLM's CPU attention rejects smaller heads); EXAONE-4.0-32B's hybrid attention (3 sliding
  : 1 global, ``layer_types``), which HF and vLLM CPU both run, so pruning's rewrite of ``layer_types``
  is exercised.
- A byte-level BPE tokenizer trained with ``tokenizers`` on the training prompts (tiny_exaone4_prompts.toml) and
  tiny_exaone4_corpus.toml, never on the gate's prompts, with ``[|system|]``, ``[|user|]``,
  ``[|assistant|]`` and ``[|endofturn|]`` (EOS) as special tokens and ``[PAD]`` for padding.
- EXAONE-4.0's chat template without its tool-calling and reasoning parts.
- Seeded weights, trained briefly on chats built from that text so that greedy answers are words, not noise.

Everything is seeded and runs single-threaded, so two machines of this kind make identical weights; the
manifest records their hash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from compress.core import paths
from compress.core.errors import CompressError
from compress.core.prompts import load_prompts
from compress.core.prompts import load_prompts as load_prompt_file  # the same parser, for the frozen training copy
from compress.folders.atomic import atomic_folder, folder_lock, read_manifest
from compress.local_models import registry

NAME = "tiny-exaone4"
TEACHER_NAME = "tiny-exaone4-teacher"
CORPUS = "tiny_exaone4_corpus.toml"
PROMPTS = "tiny_exaone4_prompts.toml"
"""The tiny model's frozen copy of the training prompts (see that file): its weights must not follow edits to
distill_prompts.toml."""
# The make checks one greedy chat answer from the saved folder; the manifest keeps it.
CHECK_PROMPT = registry.CHECK_PROMPT

PAD, BOS, EOT, UNK = "[PAD]", "[BOS]", "[|endofturn|]", "[UNK]"
SYSTEM, USER, ASSISTANT = "[|system|]", "[|user|]", "[|assistant|]"
# Ids 0..6 in this order; [|endofturn|] is EOS, as in EXAONE.
SPECIAL_TOKENS = [PAD, BOS, EOT, UNK, SYSTEM, USER, ASSISTANT]

# EXAONE-4.0's template (role indicator + newline, each turn closed by [|endofturn|] and a newline, the
# generation prompt "[|assistant|]\n"), without tools and reasoning (<think>) blocks.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{- raise_exception('tiny-exaone4 knows the system, user and assistant roles only') }}"
    "{%- endif %}"
    "{{- '[|' + message['role'] + '|]\\n' + message['content'] + '[|endofturn|]\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '[|assistant|]\\n' }}{%- endif %}"
)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights: change a field and the model (and its hash) changes."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 30
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    head_dim: int = 64
    max_position_embeddings: int = 2048
    sliding_window: int | None = 32
    """EXAONE-4.0-32B's hybrid layout: three sliding-window layers (RoPE), then one global layer (no RoPE),
    repeated; ``layer_types`` says which is which, so pruning must carry it. The window is shorter than a
    prompt plus its answer, so an engine that ignored it would answer differently. None: all layers full
    attention, as in EXAONE-4.0-1.2B."""
    seed: int = 0
    steps: int = 100
    """About 45 s of one core; the loss falls from ~23 to ~0.8 and greedy answers become sentences."""
    batch_size: int = 4
    block_size: int = 64
    learning_rate: float = 1e-2
    warmup_steps: int = 20
    embed_std: float = 0.2
    layer_scale: float = 0.02
    """Initial weight of every post-attention and post-MLP RMSNorm. EXAONE-4 is post-norm: each layer adds
    a normalised update to the residual stream, so at full weight 30 random layers drown the embeddings and
    training stalls at "the the the"; small updates train in seconds."""


TEACHER = Recipe(
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=12,
    num_attention_heads=4,
    num_key_value_heads=2,
    steps=150,
)
"""A larger EXAONE-4 teacher for the tiny model's ``base-distilled``: twice as wide (hidden 256, 4 heads / 2 KV
heads of 64), 12 layers instead of 30 (1.6x the parameters: 7.6 M), trained 1.5x as long on the same text. Its
tokenizer is trained from the same text with the same settings, so it is the student's, token for token (the
distill step checks that). As in a real family (EXAONE-4.0-32B teaching 1.2B), teacher and student differ in
width and depth, not in vocabulary."""

log = logging.getLogger(__name__)


def default_dir(name: str = NAME) -> Path:
    return paths.sources_dir() / name


# --- the training text -------------------------------------------------------------------------------


def corpus() -> tuple[list[tuple[str, str]], list[str]]:
    """(user, assistant) chats and plain texts to train on, checked to hold none of the gate's prompts."""
    raw = tomllib.loads((resources.files("compress") / "data" / CORPUS).read_text(encoding="utf-8"))
    prompts = {p.id: p.text for p in load_prompt_file(Path(str(resources.files("compress") / "data" / PROMPTS)))}
    answers = {a["id"]: a["text"] for a in raw.get("answer", [])}
    unknown = sorted(set(answers) - set(prompts))
    if unknown:
        raise CompressError(
            f"{CORPUS} answers unknown prompt ids {unknown}", f"use ids from {PROMPTS}"
        )
    chats = [(prompts[pid], answers[pid]) for pid in sorted(answers)]
    texts = [t["text"] for t in raw.get("text", [])]
    everything = "\n".join([*prompts.values(), *answers.values(), *texts]).casefold()
    leaked = [p.id for p in load_prompts() if p.text.casefold() in everything]
    if leaked:
        raise CompressError(
            f"the tiny model's training text contains gate prompts {leaked}",
            f"remove them from {CORPUS} or {PROMPTS}; the gate must not score trained-on prompts",
        )
    # Unanswered training prompts still teach the tokenizer their words.
    texts += [text for pid, text in sorted(prompts.items()) if pid not in answers]
    return chats, texts


# --- tokenizer ---------------------------------------------------------------------------------------


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (as EXAONE's) with EXAONE's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[SYSTEM, USER, ASSISTANT],
        clean_up_tokenization_spaces=False,
        model_max_length=2048,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# --- model -------------------------------------------------------------------------------------------


def layer_types(recipe: Recipe) -> list[str]:
    if recipe.sliding_window is None:
        return ["full_attention"] * recipe.num_hidden_layers
    return [
        "full_attention" if (i + 1) % 4 == 0 else "sliding_attention" for i in range(recipe.num_hidden_layers)
    ]


def build_config(recipe: Recipe, tokenizer):
    from transformers import Exaone4Config

    return Exaone4Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads,
        head_dim=recipe.head_dim,
        max_position_embeddings=recipe.max_position_embeddings,
        tie_word_embeddings=True,
        # Exaone4Config derives layer_types from sliding_window_pattern, which divides by zero when
        # sliding_window is None: always give them.
        sliding_window=recipe.sliding_window,
        layer_types=layer_types(recipe),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        architectures=["Exaone4ForCausalLM"],
    )


def encode_examples(tokenizer, chats: list[tuple[str, str]], texts: list[str]) -> list[list[int]]:
    """Chats through the chat template (so the model learns EXAONE's format), then the plain texts."""
    examples = []
    for user, answer in chats:
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        examples.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    examples += [tokenizer(text + EOT, add_special_tokens=False)["input_ids"] for text in texts]
    return examples


def train(model, examples: list[list[int]], recipe: Recipe) -> list[float]:
    """Next-token training on packed blocks, AdamW with warmup and cosine decay. Returns the loss per step.

    Each epoch shuffles the examples (seeded), joins them into one token stream and cuts it into
    ``block_size`` blocks, so no step computes on padding.
    """
    import torch
    from tqdm import tqdm

    order = random.Random(recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    losses: list[float] = []
    stream: list[int] = []
    step_tokens = recipe.batch_size * recipe.block_size
    bar = tqdm(range(recipe.steps), desc="train", unit="step", leave=False)
    for _ in bar:
        while len(stream) < step_tokens:
            epoch = list(examples)
            order.shuffle(epoch)
            stream += [token for ids in epoch for token in ids]
        batch = torch.tensor(stream[:step_tokens], dtype=torch.long).view(
            recipe.batch_size, recipe.block_size
        )
        del stream[:step_tokens]
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def check_answer(folder: Path) -> dict:
    return registry.check_answer(
        folder,
        model="tiny EXAONE-4 model",
        fix="rebuild with the default Recipe; a changed recipe may have broken training",
    )


@contextlib.contextmanager
def deterministic(threads: int = 1) -> Iterator[None]:
    """Single-threaded, deterministic torch for the block: the same weights on every machine of a kind."""
    import torch

    before_threads = torch.get_num_threads()
    before_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(before_threads)
        torch.use_deterministic_algorithms(before_det)


def build_model(recipe: Recipe | None = None) -> tuple:
    """(tokenizer, trained float32 model, training summary): the slow part of the make, all seeded."""
    import torch
    from transformers import Exaone4ForCausalLM, GenerationConfig

    recipe = recipe or Recipe()
    chats, texts = corpus()
    with deterministic():
        tokenizer = train_tokenizer([f"{u}\n{a}" for u, a in chats] + texts, recipe.vocab_size)
        torch.manual_seed(recipe.seed)
        model = Exaone4ForCausalLM(build_config(recipe, tokenizer))
        with torch.no_grad():
            model.model.embed_tokens.weight.normal_(0.0, recipe.embed_std)
            for layer in model.model.layers:
                layer.post_attention_layernorm.weight.fill_(recipe.layer_scale)
                layer.post_feedforward_layernorm.weight.fill_(recipe.layer_scale)
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        examples = encode_examples(tokenizer, chats, texts)
        started, cpu_started = time.perf_counter(), time.process_time()
        losses = train(model, examples, recipe) if recipe.steps else []
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    summary = {
        "chats": len(chats),
        "texts": len(texts),
        "tokens": sum(len(e) for e in examples),
        "steps": recipe.steps,
        "first_loss": round(losses[0], 4) if losses else None,
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4) if losses else None,
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
    }
    return tokenizer, model, summary


def make_tiny_exaone4_teacher(dest: Path | None = None, force: bool = False) -> Path:
    """Make the larger teacher (:data:`TEACHER`) at ``dest`` (default: sources/tiny-exaone4-teacher)."""
    return make_tiny_exaone4(dest or default_dir(TEACHER_NAME), force=force, recipe=TEACHER, name=TEACHER_NAME)


def make_tiny_exaone4(
    dest: Path | None = None, force: bool = False, recipe: Recipe | None = None, name: str = NAME
) -> Path:
    """Make the tiny EXAONE-4 folder at ``dest`` (default: sources/tiny-exaone4) and return its path.

    Returns at once when the folder is complete (has its manifest) and was made from the same recipe,
    unless ``force``; a folder from another recipe (an older version of this code) is remade. The folder
    holds float32 safetensors (19 MB), the tokenizer, chat_template.jinja, generation_config.json (EOS
    ``[|endofturn|]``) and manifest.json (recipe, training summary, weights' sha256, one checked answer).
    """
    recipe = recipe or Recipe()
    dest = Path(dest) if dest is not None else default_dir(name)
    with folder_lock(dest):
        existing = read_manifest(dest)
        if not force and existing is not None and existing.get("recipe") == dataclasses.asdict(recipe):
            return dest
        tokenizer, model, summary = build_model(recipe)
        log.info(
            "%s: trained %d steps in %.1f s, loss %s -> %s",
            name,
            summary["steps"],
            summary["train_seconds"],
            summary["first_loss"],
            summary["final_loss"],
        )
        info = {"name": name, "recipe": dataclasses.asdict(recipe), "train": summary}
        with atomic_folder(dest, info=info) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            info["check"] = check_answer(tmp)
    return dest
