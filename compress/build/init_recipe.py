"""``python -m compress init``: a commented recipe for a team's own checkpoint folder, read from its config.json.

It writes the usual eight-variant matrix (the base, pruned, distilled, AWQ and their combinations) with the
parameters that depend on the checkpoint chosen from its config: ``keep`` = layers - 1 (so the pruned variant
of a 30-layer model is ``compressed-l29``), the AWQ group size (the largest of 128, 64, 32 that divides every
quantized layer's input width: SmolLM2's hidden 576 needs 64), and the family's own steps (EXAONE 3.x's remote
code). The other parameters are the ones measured on SmolLM2 (``compress/build/recipes/smollm2.toml``), the
project's only real chat model. What it cannot build is refused before anything is written, with the fix:
no config.json, an unknown or mixture-of-experts architecture, a quantized checkpoint, no tokenizer or chat
template. The text is parsed as a recipe before it is written (atomically), so what init writes, build reads.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from compress.build.recipe import NAME_RE, Recipe, parse_recipe
from compress.builders.prune import COUNT_KEYS, LAYOUTS
from compress.core.atomicio import write_text_atomic
from compress.core.errors import CompressError
from compress.folders.checks import SUPPORTED_ARCHITECTURES, check_model_folder, read_config

GROUP_SIZES = (128, 64, 32)
"""AWQ group sizes init picks from, largest first (more groups cost more scales; 128 is llm-compressor's default)."""
MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size", "num_experts_per_tok")
"""Config keys of mixture-of-experts models: pruning and AWQ here treat every MLP as one dense block."""


@dataclass(frozen=True)
class Family:
    """What one architecture needs beyond the common recipe: remote code, and lines for the header."""

    label: str
    notes: tuple[str, ...]
    needs_remote_code: bool = False
    """Its modeling code lives in the folder: init asks for --trust-remote-code, and the recipe then says so."""
    warning: str | None = None
    """Printed by init and written at the top of the recipe: what does not build yet."""


_LLAMA_NOTES = (
    "Llama layout: decoder layers under model.layers; AWQ uses llm-compressor's mapping for this architecture",
    "(pre-norm: input_layernorm -> q/k/v, v_proj -> o_proj, post_attention_layernorm -> gate/up, up -> down).",
)
FAMILIES = {
    "Exaone4ForCausalLM": Family(
        "EXAONE 4.0",
        (
            "EXAONE 4.0: pruning rewrites num_hidden_layers and layer_types, so the hybrid sliding/global attention",
            "pattern (EXAONE-4.0-32B: 3 sliding : 1 global) follows the kept layers; AWQ uses llm-compressor's own",
            "EXAONE-4 mapping (post-norm: v_proj -> o_proj, up_proj -> down_proj).",
        ),
    ),
    "ExaoneForCausalLM": Family(
        "EXAONE 3.x",
        (
            "EXAONE 3.x (model_type exaone): its modeling code is Python in the folder (trust_remote_code, asked for",
            "with --trust-remote-code); decoder layers under transformer.h, the layer count in num_layers.",
        ),
        needs_remote_code=True,
        warning=(
            "AWQ on EXAONE 3.x needs the EXAONE-3 builder support (issue 18) before the -llmc-awq variants build; "
            "until it lands, build the others with --variants base,base-distilled,compressed-l{keep},"
            "compressed-l{keep}-distilled"
        ),
    ),
    "LlamaForCausalLM": Family("Llama", _LLAMA_NOTES),
    "Qwen2ForCausalLM": Family("Qwen2 (Llama layout)", _LLAMA_NOTES),
    "MistralForCausalLM": Family("Mistral (Llama layout)", _LLAMA_NOTES),
}
"""Architectures init writes recipes for; only those the folder check and the prune layouts also know are used."""


@dataclass(frozen=True)
class Checkpoint:
    """What init read from a checkpoint's config.json."""

    folder: Path
    architecture: str
    model_type: str
    layers: int
    hidden: int
    intermediate: int
    attention_width: int
    """num_attention_heads x head_dim: o_proj's input width, which need not equal hidden."""
    parameters: int
    """Estimated from the config (embeddings and decoder layers), for the header and the print-out."""
    dtype: str
    layer_types: tuple[str, ...] = ()

    @property
    def family(self) -> Family:
        return FAMILIES[self.architecture]

    @property
    def keep(self) -> int:
        return self.layers - 1

    @property
    def group_size(self) -> int:
        return awq_group_size((self.hidden, self.intermediate, self.attention_width))


def known_architectures() -> list[str]:
    """Architectures every step can handle: init's families that the folder check and pruning also know."""
    return [a for a in FAMILIES if a in SUPPORTED_ARCHITECTURES and a in LAYOUTS]


def awq_group_size(widths: tuple[int, ...]) -> int:
    """The largest of :data:`GROUP_SIZES` dividing every width; llm-compressor refuses one that does not."""
    for size in GROUP_SIZES:
        if all(w % size == 0 for w in widths):
            return size
    raise CompressError(
        f"no AWQ group size of {', '.join(map(str, GROUP_SIZES))} divides the layer widths {sorted(set(widths))}",
        "write the recipe by hand with [step.awq] group_size = 16 (or drop the -llmc-awq variants)",
    )


def inspect_checkpoint(base: str | Path, *, trust_remote_code: bool = False) -> Checkpoint:
    """Read and check a checkpoint folder; every refusal is one line with its fix."""
    folder = Path(base).expanduser()
    if not folder.is_dir():
        raise CompressError(
            f"--base {base} is not a folder",
            "download the checkpoint first (e.g. `huggingface-cli download LGAI-EXAONE/EXAONE-4.0-1.2B "
            "--local-dir DIR`) and pass that folder; init reads config.json and never fetches anything",
        )
    folder = folder.resolve()
    config = read_config(folder)  # no config.json / not JSON: one line with the fix
    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else ""
    if config.get("quantization_config") or config.get("quantization"):
        quant = config.get("quantization_config")
        method = quant.get("quant_method", "") if isinstance(quant, dict) else ""
        raise CompressError(
            f"{folder} is a quantized checkpoint{f' ({method})' if method else ''}",
            "pass the unquantized (bf16/fp32) checkpoint: pruning and distillation rewrite full-precision weights, "
            "and the recipe's awq step quantizes it itself",
        )
    moe = [k for k in MOE_KEYS if config.get(k)]
    if moe or "moe" in arch.lower():
        raise CompressError(
            f"{folder} is a mixture-of-experts model ({arch or moe[0]}: {', '.join(moe) or 'MoE architecture'})",
            "use a dense checkpoint: the prune, distill and awq steps here treat each MLP as one dense block",
        )
    known = known_architectures()
    if arch not in known:
        what = f"architecture {arch!r}" if arch else "no architectures list in config.json"
        raise CompressError(
            f"init cannot write a recipe for {folder}: {what}",
            f"use a checkpoint of {', '.join(known)}, or write the recipe by hand "
            "(compress/build/recipes/*.toml) after adding the architecture to the builders",
        )
    layers = next((int(config[k]) for k in COUNT_KEYS if isinstance(config.get(k), int)), 0)
    if layers < 2:
        raise CompressError(
            f"{folder}/config.json gives {layers or 'no'} decoder layers ({' / '.join(COUNT_KEYS)})",
            "pruning needs at least 2 layers; check that config.json belongs to these weights",
        )
    sizes = {k: config.get(k) for k in ("hidden_size", "intermediate_size")}
    missing = [k for k, v in sizes.items() if not isinstance(v, int) or v < 1]
    if missing:
        raise CompressError(f"{folder}/config.json has no {' or '.join(missing)}", "check config.json")
    hidden, intermediate = int(sizes["hidden_size"]), int(sizes["intermediate_size"])  # type: ignore[arg-type]
    heads = int(config.get("num_attention_heads") or 1)
    head_dim = int(config.get("head_dim") or hidden // heads)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    if FAMILIES[arch].needs_remote_code and not trust_remote_code:
        raise CompressError(
            f"{folder} is {FAMILIES[arch].label}, whose modeling code is Python in the folder",
            "pass --trust-remote-code if you trust that folder's Python files (the recipe then says "
            "trust_remote_code = true, and every build and gate run executes them)",
        )
    check_model_folder(folder, trust_remote_code=trust_remote_code)  # weights, shards, tokenizer, chat template
    if FAMILIES[arch].needs_remote_code:
        _check_remote_code(folder, config)
    layer_types = config.get("layer_types")
    return Checkpoint(
        folder=folder,
        architecture=arch,
        model_type=str(config.get("model_type", "?")),
        layers=layers,
        hidden=hidden,
        intermediate=intermediate,
        attention_width=heads * head_dim,
        parameters=_parameters(config, layers, hidden, intermediate, heads, kv_heads, head_dim),
        dtype=str(config.get("dtype") or config.get("torch_dtype") or "?").replace("torch.", ""),
        layer_types=tuple(layer_types) if isinstance(layer_types, list) else (),
    )


def _check_remote_code(folder: Path, config: dict) -> None:
    """EXAONE 3.x runs the modeling code its config's auto_map names: those files must be in the folder."""
    auto_map = config.get("auto_map") or {}
    files = sorted({f"{str(ref).split('--')[-1].rsplit('.', 1)[0]}.py" for ref in auto_map.values()})
    absent = [f for f in files if not (folder / f).is_file()]
    if not files or absent:
        raise CompressError(
            f"{folder} is EXAONE 3.x but lacks its remote code ({', '.join(absent or ['no auto_map in config.json'])})",
            "copy configuration_exaone.py and modeling_exaone.py from the model's release into the folder",
        )


def _parameters(config: dict, layers: int, hidden: int, ffn: int, heads: int, kv: int, head_dim: int) -> int:
    vocab = int(config.get("vocab_size") or 0)
    tied = bool(config.get("tie_word_embeddings", True))
    attention = hidden * head_dim * (2 * heads + 2 * kv)  # q, o; k, v
    return vocab * hidden * (1 if tied else 2) + layers * (attention + 3 * hidden * ffn)


def _billions(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.1f}M"


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON's string escapes are valid in a TOML basic string


def recipe_text(ckpt: Checkpoint, name: str, recipe_path: str = "RECIPE.toml") -> str:
    """The commented recipe, as the shipped ones are written: the header, each step, the profiles, the variants."""
    keep, fam = ckpt.keep, ckpt.family
    pruned = f"compressed-l{keep}"
    widths = f"hidden {ckpt.hidden}, FFN {ckpt.intermediate}, attention {ckpt.attention_width}"
    shape = (
        f"{ckpt.architecture} (model_type {ckpt.model_type}), {ckpt.layers} decoder layers, hidden {ckpt.hidden}, "
        f"FFN {ckpt.intermediate}, about {_billions(ckpt.parameters)} parameters, {ckpt.dtype}"
    )
    counts = {t: ckpt.layer_types.count(t) for t in dict.fromkeys(ckpt.layer_types)}
    kinds = ", ".join(f"{n} {t}" for t, n in counts.items())
    lines = [
        f"# The {name} variant matrix, written by `python -m compress init` from {ckpt.folder}:",
        f"# {shape}.",
        *([f"# layer_types: {kinds} (each kept layer keeps its type)."] if kinds else []),
        "# The eight variants of the developers' guide; plain data, checked when it loads: edit it freely.",
        "#",
        f"#   python -m compress build {recipe_path} --plan            # the variants, what a build would do",
        f"#   python -m compress build {recipe_path} --profile quick   # a cheap smoke build (CPU-sized steps)",
        f"#   python -m compress build {recipe_path}                   # the full profile (a GPU helps)",
        f"#   pytest tests/gate/test_release_gate.py --gate-models-dir=$EXAONE_COMPRESSION_HOME/models/{name}"
        + (" --gate-trust-remote-code" if fam.needs_remote_code else ""),
        "#",
        *(f"# {line}" for line in fam.notes),
        f"# Variant names come from the steps: prune keeping {keep} layers -> {pruned}, distill -> -distilled,",
        "# awq -> -llmc-awq. Training and calibration data are the project's training prompts with the base's own",
        "# answers (compress/data/distill_prompts.toml), never the gate's prompts.",
    ]
    if fam.warning:
        lines += ["#", f"# NOTE: {fam.warning.format(keep=keep)}."]
    lines += [
        "",
        f"matrix = {_toml_string(name)}   # folders: $EXAONE_COMPRESSION_HOME/models/{name}/<variant>; the gate's name",
        f"base = {_toml_string(str(ckpt.folder))}",
        "# base: a checkpoint folder (absolute, or relative to this file's folder) or a local model name",
        f"description = {_toml_string(f'{fam.label}, {ckpt.layers} layers: pruning, distillation, AWQ W4A16')}",
    ]
    if fam.needs_remote_code:
        lines.append("trust_remote_code = true   # runs the folder's modeling code: only for a folder you trust")
    lines += [
        "",
        "[step.prune]",
        f"keep = {keep:<19}# drop 1 of {ckpt.layers} decoder layers: the one with the lowest Block Influence",
        "# drop = [14]             # or name the layers to drop yourself",
        "calibration_samples = 42  # training prompts (with the base's answers) that score the layers",
        "",
        "[step.distill]",
        "# As measured on SmolLM2 l29 (compress/build/recipes/smollm2.toml): training only the layers beside the",
        "# cut generalised to held-out prompts, training every parameter overfitted. Check the manifest's",
        "# held-out KD loss after a build; a model of another size may want other steps or lr.",
        "steps = 200               # AdamW steps of batch_size sequences (151 training sequences: ~10 epochs)",
        "batch_size = 8",
        "lr = 3e-4",
        "temperature = 1.0         # forward KL(teacher || student) on response tokens, scaled by T^2",
        'train_layers = "around-cut"  # two decoder layers each side of the gap, the rest frozen',
        "holdout_every = 8         # 1 training prompt in 8 held out: the manifest's KD loss is on them",
        'save_dtype = "float32"    # keeps what was learned (bf16 rounding undid part of it); "input": as the base',
        "",
        "[step.awq]",
        f"group_size = {ckpt.group_size:<13}# the largest of 128/64/32 dividing each input width: {widths}",
        "num_samples = 42          # calibration sequences: training prompts + the base's answers, chat template",
        "max_seq_length = 128",
        "n_grid = 20               # llm-compressor's default scale search",
        "",
        "[profile.full]            # the parameters above, unchanged",
        "",
        "[profile.quick]           # CPU-sized steps: a smoke build, not a release",
        'distill = { steps = 24, batch_size = 16, lr = 3e-4, lr_schedule = "linear" }',
        "awq = { n_grid = 5, num_samples = 16 }   # AWQ's cost is n_grid x samples x tokens: ~8x less",
    ]
    variants = [
        ("base", None, "[]", "a copy of the base model (hard links), the gate's baseline"),
        ("base-distilled", None, '["distill"]', None),
        (pruned, None, '["prune"]', None),
        ("base-llmc-awq", None, '["awq"]', None),
        (f"{pruned}-distilled", pruned, '["distill"]', "the pruned model learns back from the base"),
        (f"{pruned}-llmc-awq", pruned, '["awq"]', None),
        ("base-distilled-llmc-awq", "base-distilled", '["awq"]', None),
        (f"{pruned}-distilled-llmc-awq", f"{pruned}-distilled", '["awq"]', None),
    ]
    for result, parent, steps, why in variants:
        lines += ["", f"[[variant]]   # -> {result}" + (f": {why}" if why else "")]
        if parent:
            lines.append(f"from = {_toml_string(parent)}")
        lines.append(f"steps = {steps}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class InitResult:
    path: Path
    checkpoint: Checkpoint
    recipe: Recipe

    def summary(self) -> str:
        c = self.checkpoint
        lines = [
            f"wrote {self.path}: matrix {self.recipe.matrix}, {len(self.recipe.variants)} variants, base {c.folder}",
            f"  {c.family.label} ({c.architecture}): {c.layers} layers -> keep {c.keep}; hidden {c.hidden}, "
            f"FFN {c.intermediate} -> AWQ group_size {c.group_size}; about {_billions(c.parameters)} parameters",
        ]
        if c.family.warning:
            lines.append(f"  note: {c.family.warning.format(keep=c.keep)}")
        lines += [
            "next:",
            f"  python -m compress build {self.path} --plan",
            f"  python -m compress build {self.path} --profile quick",
        ]
        return "\n".join(lines)


def init_recipe(
    base: str | Path, name: str, out: str | Path, *, force: bool = False, trust_remote_code: bool = False
) -> InitResult:
    """Inspect ``base``, write its recipe to ``out`` (refusing to overwrite unless ``force``), return what was done."""
    if not NAME_RE.match(name):
        raise CompressError(
            f"--name {name!r} is not a folder name", "use letters, digits, '.', '_' and '-' (e.g. exaone4-1.2b)"
        )
    path = Path(out)
    if path.suffix != ".toml":
        raise CompressError(f"--out {path} does not end in .toml", f"write it as {path.with_suffix('.toml')}")
    if path.is_dir():
        raise CompressError(f"--out {path} is a folder", f"pass a file path such as {path / (name + '.toml')}")
    if path.exists() and not force:
        raise CompressError(f"recipe {path} exists", "pass --force to overwrite it, or choose another --out")
    ckpt = inspect_checkpoint(base, trust_remote_code=trust_remote_code)
    text = recipe_text(ckpt, name, str(path))
    recipe = parse_recipe(tomllib.loads(text), profile="full", source=str(path))  # what init writes, build reads
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return InitResult(path, ckpt, recipe)
