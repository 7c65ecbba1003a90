"""Degraded copies of a good variant, of graded severity, for the gate's evidence that its quality verdicts
separate good from broken.

:mod:`compress.local_models.broken` makes folders that fail outright; these still load and answer, only worse,
by an amount one parameter sets: the kind of damage a real compression step does.

- :func:`perturb_weights`: Gaussian noise on the decoder's linear weights, scaled to each tensor's own std.
- :func:`round_to_nearest`: group-wise fake quantization of the same weights (AWQ W4A16's grid without its
  scaling search), stored back as floats so any engine runs it as a plain model.
- :func:`drop_layers`: whole decoder layers removed (:func:`compress.builders.prune.prune_checkpoint`).
- :func:`add_idle_layers`: the opposite for speed: layers added that change no answer, only the time.

Each writes a new folder (refusing an existing one) through a temp folder beside it, so a killed run leaves no
half-written copy; unchanged files are hard-linked, the source is never modified, and ``degraded.json`` records
what was done so a report can say what each copy is.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.local_models.broken import link_copy

if TYPE_CHECKING:
    import torch

RECORD = "degraded.json"
# A decoder layer's tensor: llama/EXAONE 4 (model.layers.N.), EXAONE 3.x / GPT-2 style (transformer.h.N.).
_DECODER_WEIGHT = re.compile(r"(?:^|\.)(?:layers|h)\.\d+\..*weight$")
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def is_decoder_linear(name: str, ndim: int) -> bool:
    """q/k/v/o and gate/up/down: 2-D weights inside a decoder layer (norms are 1-D; embeddings and lm_head
    live outside the layers), the tensors a quantizer or a bad fine-tune actually changes."""
    return ndim == 2 and _DECODER_WEIGHT.search(name) is not None


@contextlib.contextmanager
def _new_folder(source: Path, dest: Path, record: dict[str, Any], *, skip: tuple[str, ...] | None) -> Iterator[Path]:
    """Yield a temp folder with ``source``'s files hard-linked (minus ``skip``; None: an empty folder); on
    success write the record and rename the folder to ``dest``. The source's own record is never linked, since
    rewriting a hard link would edit the source."""
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"{dest} already exists; a degraded copy is never written over a folder")
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source} is not a model folder (no config.json)")
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if skip is None:
            tmp.mkdir(parents=True)
        else:
            link_copy(source, tmp, skip=(*skip, RECORD))
        yield tmp
        (tmp / RECORD).unlink(missing_ok=True)  # a copy carried over from a degraded source
        record = {"source": str(source.resolve()), **record}
        (tmp / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _rewrite(
    source: str | Path,
    dest: str | Path,
    record: dict[str, Any],
    select: Callable[[str, int, str], bool],
    change: Callable[[str, torch.Tensor], torch.Tensor],
) -> Path:
    """Apply ``change(name, tensor)`` to each tensor ``select(name, ndim, dtype)`` picks, keeping its dtype;
    only the shards holding one are rewritten (the rest stay hard links)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    source, dest = Path(source), Path(dest)
    touched: dict[str, list[str]] = {}
    for shard in sorted(source.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            slices = {k: handle.get_slice(k) for k in handle.keys()}  # header only: no tensor is read
            names = [k for k, s in slices.items() if select(k, len(s.get_shape()), s.get_dtype())]
        if names:
            touched[shard.name] = names
    if not touched:
        raise ValueError(f"{source} has no tensor to degrade (no 2-D weight under '.layers.N.' or '.h.N.')")
    record = {**record, "tensors_changed": sum(map(len, touched.values())), "shards_rewritten": sorted(touched)}
    with _new_folder(source, dest, record, skip=tuple(touched)) as tmp:
        for shard, names in touched.items():
            with safe_open(str(source / shard), framework="pt") as handle:
                metadata = handle.metadata() or {"format": "pt"}
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
            for name in names:
                tensors[name] = change(name, tensors[name]).to(tensors[name].dtype).contiguous()
            save_file(tensors, str(tmp / shard), metadata=metadata)
    return dest


def perturb_weights(
    source: str | Path, dest: str | Path, *, relative_noise: float, seed: int = 0, include: str = "linear"
) -> Path:
    """Add N(0, (relative_noise * std(W))^2) to every decoder linear weight W (``include="all"``: to every
    floating tensor, embeddings and norms too). Each tensor's generator is seeded from ``seed`` and the crc32 of
    its name, so one (seed, name) gives the same noise on any machine and in any shard layout. The CPU generator
    keeps only 32 bits of a seed, so the two are mixed within 32 bits: crc32 with ``seed`` as its start value,
    one-to-one in ``seed`` for a given name."""
    import torch

    if relative_noise < 0 or not 0 <= seed < 2**32:
        raise ValueError(f"relative_noise must be >= 0 and seed in 0..2**32-1, got {relative_noise} and {seed}")
    if include not in ("linear", "all"):
        raise ValueError(f"include must be 'linear' or 'all', got {include!r}")

    def select(name: str, ndim: int, dtype: str) -> bool:
        return dtype in _FLOAT_DTYPES and (include == "all" or is_decoder_linear(name, ndim))

    def change(name: str, tensor: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(device="cpu").manual_seed(zlib.crc32(name.encode(), seed))
        weight = tensor.float()
        noise = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
        std = weight.std() if weight.numel() > 1 else weight.new_zeros(())
        return weight + noise * (relative_noise * std)

    record = {"kind": "perturb_weights", "params": {"relative_noise": relative_noise, "seed": seed, "include": include}}
    return _rewrite(source, dest, record, select, change)


def fake_quantize(weight: torch.Tensor, *, bits: int, group_size: int, symmetric: bool) -> torch.Tensor:
    """Quantize then dequantize along the last dim in groups of ``group_size``, in float32. Asymmetric: integer
    zero point and ``scale = (max - min) / (2**bits - 1)`` per group, as AutoAWQ's ``pseudo_quantize_tensor``;
    symmetric: ``scale = max|w| / (2**(bits-1) - 1)``. Every element moves by at most ``scale / 2``."""
    import torch

    if weight.shape[-1] % group_size:
        raise ValueError(
            f"the last dim {weight.shape[-1]} of a {tuple(weight.shape)} weight is not divisible by "
            f"group_size={group_size}; pick a group size that divides every decoder linear weight's input dim"
        )
    groups = weight.float().reshape(*weight.shape[:-1], -1, group_size)
    if symmetric:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        scale = groups.abs().amax(dim=-1, keepdim=True) / qmax
        zero = torch.zeros_like(scale)
    else:
        qmin, qmax = 0, 2**bits - 1
        low, high = groups.amin(dim=-1, keepdim=True), groups.amax(dim=-1, keepdim=True)
        scale = (high - low) / qmax
    flat = scale == 0  # a constant group (all zero, when symmetric) is already on the grid: keep it exact
    safe = torch.where(flat, torch.ones_like(scale), scale)
    if not symmetric:
        zero = torch.clamp(-torch.round(low / safe), qmin, qmax)
    q = torch.clamp(torch.round(groups / safe) + zero, qmin, qmax)
    out = torch.where(flat, groups, (q - zero) * safe)
    return out.reshape(weight.shape)


def round_to_nearest(
    source: str | Path, dest: str | Path, *, bits: int = 4, group_size: int = 64, symmetric: bool = False
) -> Path:
    """Fake-quantize every decoder linear weight (:func:`fake_quantize`) and store it in its own dtype: the
    damage of a W{bits} quantizer, without needing a W4 kernel in the engine that evaluates it."""
    if not 2 <= bits <= 8 or group_size < 1:
        raise ValueError(f"bits must be in 2..8 and group_size >= 1, got bits={bits}, group_size={group_size}")
    record = {"kind": "round_to_nearest", "params": {"bits": bits, "group_size": group_size, "symmetric": symmetric}}

    def select(name: str, ndim: int, dtype: str) -> bool:
        return dtype in _FLOAT_DTYPES and is_decoder_linear(name, ndim)

    def change(name: str, tensor: torch.Tensor) -> torch.Tensor:
        try:
            return fake_quantize(tensor, bits=bits, group_size=group_size, symmetric=symmetric)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None

    return _rewrite(source, dest, record, select, change)


def drop_layers(source: str | Path, dest: str | Path, *, drop: Iterable[int]) -> Path:
    """Remove the ``drop`` decoder layers (renumbering the rest, config and ``layer_types`` rewritten); the
    tokenizer, chat template and generation config come along, so the copy loads as an HF folder."""
    from compress.builders.prune import prune_checkpoint

    source, dest = Path(source), Path(dest)
    drop = list(drop)
    record: dict[str, Any] = {"kind": "drop_layers", "params": {"drop": sorted(drop)}}
    with _new_folder(source, dest, record, skip=None) as tmp:
        summary = prune_checkpoint(source, tmp, drop)  # also carries the non-weight side files (copied)
        record.update(layers_before=summary["layers_before"], layers_after=summary["layers_after"])
    return dest


# A decoder layer's output projections (llama/EXAONE 4: o_proj, down_proj; EXAONE 3.x: out_proj, c_proj): with
# them zero, the layer adds exactly 0 to the residual stream.
_OUTPUT_PROJECTION = re.compile(r"(?:o_proj|down_proj|out_proj|c_proj)\.(?:weight|bias)$")


def add_idle_layers(source: str | Path, dest: str | Path, *, extra: int) -> Path:
    """A slower copy that answers exactly as ``source``: ``extra`` copies of its first layers appended after
    the last, their output projections zeroed, so each adds 0 to the residual stream (``x + 0`` is ``x``
    bit for bit) yet costs a layer's compute. The speed gate's known-slow variant (``bench reruns``, the
    self-check's ``slow``): every quality case passes it, only the speed case can tell."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from compress.builders.prune import INDEX_FILE, config_with_layers, layout_for, num_layers

    source, dest = Path(source), Path(dest)
    if extra < 1:
        raise ValueError(f"extra must be at least 1 layer, got {extra}")
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    n, layout = num_layers(config), layout_for(config)
    config = config_with_layers(config, [*range(n), *(j % n for j in range(extra))])  # layer n + j copies j % n
    shards = sorted(source.glob("*.safetensors"))
    index_file = source / INDEX_FILE
    index = json.loads(index_file.read_text(encoding="utf-8")) if index_file.is_file() else None
    record: dict[str, Any] = {"kind": "add_idle_layers", "params": {"extra": extra}, "layers_before": n,
                              "layers_after": n + extra}  # fmt: skip
    skip = ("config.json", *(s.name for s in shards), *((INDEX_FILE,) if index else ()))
    with _new_folder(source, dest, record, skip=skip) as tmp:
        for shard in shards:
            with safe_open(str(shard), framework="pt") as handle:
                metadata = handle.metadata() or {"format": "pt"}
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
            for name, tensor in list(tensors.items()):
                match = layout.pattern().match(name)
                if match is None:
                    continue
                layer, rest = int(match.group(1)), match.group(2)
                for j in range(layer, extra, n):  # the appended layers n + j that copy this one (j % n == layer)
                    copy = tensor.clone()
                    if _OUTPUT_PROJECTION.search(rest):
                        copy.zero_()
                    new_name = f"{layout.prefix}{n + j}.{rest}"
                    tensors[new_name] = copy
                    if index is not None:
                        index["weight_map"][new_name] = shard.name
            save_file(tensors, str(tmp / shard.name), metadata=metadata)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if index is not None:
            (tmp / index_file.name).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return dest
