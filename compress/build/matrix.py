"""recipe -> steps -> model folders: build a variant matrix, reusing what is already up to date.

For each variant, in the recipe's order (every variant after the one it starts from):

1. compute its fingerprint: the input folder's content digest, the fingerprint of the variant it starts
   from, each step's parameters, the step's code version and tool versions (:mod:`compress.folders.manifest`);
2. if ``<out>/<variant>/manifest.json`` carries that fingerprint, reuse the folder ("up to date");
3. else run its steps into a temp folder beside the target and rename it into place with its manifest as
   the last file written (:func:`compress.folders.atomic.atomic_folder`). A killed build leaves only a
   ``<variant>.tmp-<pid>`` folder without a manifest, which no later run takes as built and the next
   build deletes.

The ``base`` variant (no steps) is a copy of the base model, hard-linked where the file system allows, so a
matrix folder holds every variant the gate compares.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from compress import __version__
from compress.build.recipe import Recipe, Variant
from compress.builders import BUILDERS, BuildContext
from compress.builders.common import link_model_files
from compress.core import paths
from compress.core.errors import CompressError
from compress.core.prompts import load_training_prompts
from compress.core.provenance import host, tool_versions
from compress.folders.atomic import atomic_folder, folder_lock, read_manifest
from compress.folders.checks import check_model_folder, read_config
from compress.folders.manifest import (
    FORMAT,
    code_version,
    fingerprint,
    folder_digest,
    is_up_to_date,
)
from compress.local_models.registry import LOCAL_MODELS

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class BuildResult:
    variant: str
    path: Path
    status: Literal["built", "up to date"]
    seconds: float
    fingerprint: str


def resolve_base(base: str, *, trust_remote_code: bool = False) -> Path:
    """A local model name (made if missing) or a model folder path, checked."""
    if base in LOCAL_MODELS:
        folder = LOCAL_MODELS[base].make()  # made if missing, else checked
    else:
        folder = Path(base).expanduser()
        if not folder.is_dir():
            raise CompressError(
                f"recipe base {base!r} is neither a local model ({', '.join(LOCAL_MODELS)}) nor a folder",
                "set base to one of those names or to a Hugging Face model folder (absolute, or relative to the "
                "recipe file's folder); a hub id is never downloaded: download it first and give its folder",
            )
    check_model_folder(folder, trust_remote_code=trust_remote_code)
    return folder


def build_matrix(
    recipe: Recipe,
    *,
    out_dir: Path | None = None,
    variants: list[str] | None = None,
    force: bool = False,
    base_dir: Path | None = None,
) -> list[BuildResult]:
    """Build the recipe's variants (or ``variants`` and what they start from) into ``out_dir``.

    ``force`` rebuilds the named variants (all, when none are named) even when up to date.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir) if out_dir is not None else paths.matrix_dir(recipe.matrix)
    order = recipe.select(variants)
    forced = set(variants or order) if force else set()
    base_dir = base_dir or resolve_base(recipe.base, trust_remote_code=recipe.trust_remote_code)
    check_plan(recipe, order, base_dir)
    teachers = resolve_teachers(recipe, order)
    ctx = BuildContext(
        base_dir=base_dir,
        trust_remote_code=recipe.trust_remote_code,
        cache_dir=paths.home() / "cache",
        log=lambda line: tqdm.write(line),
        teachers=teachers,
    )
    data_digest = _training_data_digest()
    base_digest = folder_digest(base_dir)
    teacher_digests = {name: folder_digest(folder) for name, folder in teachers.items()}
    log.debug(recipe.describe())
    log.info("output: %s", out_dir)

    results: list[BuildResult] = []
    fingerprints: dict[str, str] = {}
    bar = tqdm(order, desc=f"build {recipe.matrix}", unit="variant")
    for name in bar:
        bar.set_postfix_str(name)
        variant = recipe.variants[name]
        src = base_dir if variant.parent is None else out_dir / variant.parent
        parts = fingerprint_parts(
            variant,
            input_digest=folder_digest(src),
            parent_fingerprint=fingerprints.get(variant.parent or ""),
            base_digest=base_digest,
            data_digest=data_digest,
            teacher_digests=teacher_digests,
        )
        fp = fingerprint(parts)
        fingerprints[name] = fp
        dest = out_dir / name
        started = time.perf_counter()
        with folder_lock(dest):
            if name not in forced and is_up_to_date(dest, fp):
                results.append(BuildResult(name, dest, "up to date", time.perf_counter() - started, fp))
                tqdm.write(f"{name}: up to date ({dest})")
                continue
            why = stale_because(dest, parts)
            tqdm.write(f"{name}: building from {variant.parent or 'the base model'} ({why}) ...")
            _build_variant(recipe, variant, src, dest, ctx, parts=parts, fp=fp, base_dir=base_dir)
        seconds = time.perf_counter() - started
        results.append(BuildResult(name, dest, "built", seconds, fp))
        tqdm.write(f"{name}: built in {seconds:.1f} s ({dest})")
    return results


def resolve_teachers(recipe: Recipe, order: list[str]) -> dict[str, Path]:
    """Every distill teacher the variants in ``order`` name, as a checked folder (a local model is made when
    missing), before anything is built: a misspelt teacher fails in a second."""
    names = {
        step.params.teacher  # type: ignore[attr-defined]
        for name in order
        for step in recipe.variants[name].steps
        if step.kind == "distill" and step.params.teacher is not None  # type: ignore[attr-defined]
    }
    teachers = {}
    for name in sorted(names):
        try:
            teachers[name] = resolve_base(name, trust_remote_code=recipe.trust_remote_code)
        except CompressError as err:
            raise CompressError(f"recipe {recipe.source}: distill teacher {name!r}: {err.what}", err.fix) from None
    return teachers


def check_plan(recipe: Recipe, order: list[str], base_dir: Path) -> None:
    """Check what can be checked before anything is written: every prune step's ``keep`` and ``drop``
    against the layer count it will meet (the base's, or the ``keep`` of the prune before it), so a bad
    index fails in a second instead of after the steps before it ran, and leaves no folder behind."""
    from compress.builders import prune

    if not any(step.kind == "prune" for name in order for step in recipe.variants[name].steps):
        return
    layers: dict[str, int] = {}  # decoder layers of each variant's output; parents come first in ``order``
    base_layers = prune.num_layers(read_config(base_dir))
    for name in order:
        variant = recipe.variants[name]
        n = layers[variant.parent] if variant.parent else base_layers
        for step in variant.steps:
            if step.kind != "prune":
                continue
            try:
                prune.check_params(n, step.params)  # type: ignore[arg-type]
            except CompressError as err:
                raise CompressError(f"recipe {recipe.source}, variant {name}: {err.what}", err.fix) from None
            n = step.params.keep  # type: ignore[attr-defined]
        layers[name] = n


def matrix_status(recipe: Recipe, *, out_dir: Path | None = None, base_dir: Path | None = None) -> dict[str, str]:
    """What a build would do, without building: per variant "up to date", "stale" (built from other
    inputs or parameters), "not built" (no complete folder), or "after <parent>" (its input is not built)."""
    out_dir = Path(out_dir) if out_dir is not None else paths.matrix_dir(recipe.matrix)
    base_dir = base_dir or resolve_base(recipe.base, trust_remote_code=recipe.trust_remote_code)
    data_digest, base_digest = _training_data_digest(), folder_digest(base_dir)
    teacher_digests = {n: folder_digest(f) for n, f in resolve_teachers(recipe, list(recipe.variants)).items()}
    status: dict[str, str] = {}
    for name, variant in recipe.variants.items():
        parent_manifest = read_manifest(out_dir / variant.parent) if variant.parent else None
        if variant.parent and (parent_manifest is None or status[variant.parent] != "up to date"):
            status[name] = f"after {variant.parent}"
            continue
        src = base_dir if variant.parent is None else out_dir / variant.parent
        parts = fingerprint_parts(
            variant,
            input_digest=folder_digest(src),
            parent_fingerprint=parent_manifest.get("fingerprint") if parent_manifest else None,
            base_digest=base_digest,
            data_digest=data_digest,
            teacher_digests=teacher_digests,
        )
        dest = out_dir / name
        if is_up_to_date(dest, fingerprint(parts)):
            status[name] = "up to date"
        else:
            status[name] = stale_because(dest, parts)
    return status


def stale_because(dest: Path, parts: dict) -> str:
    """Why ``dest`` cannot be reused: "not built", or "stale: <changed fingerprint parts>"."""
    manifest = read_manifest(dest)
    if manifest is None:
        return "not built"
    old = manifest.get("fingerprint_parts")
    changed = _differences(old, parts) if isinstance(old, dict) else ["format"]
    return "stale: " + ", ".join(changed or ["files missing"]) + " changed"


def _differences(old: object, new: object, path: str = "") -> list[str]:
    """Dotted paths where two fingerprint-part trees differ (e.g. ``steps.0.params.n_grid``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in _differences(a, b, f"{path}.{i}")]
    return [] if old == new else [path or "(all)"]


def fingerprint_parts(
    variant: Variant,
    *,
    input_digest: str,
    parent_fingerprint: str | None,
    base_digest: str,
    data_digest: str,
    teacher_digests: dict[str, str] | None = None,
) -> dict:
    """Everything that decides a variant's output. Equal parts: the existing folder is reused."""
    steps = []
    for step in variant.steps:
        builder = BUILDERS[step.kind]
        part = {**step.describe(), "code": code_version(builder.modules), "tools": tool_versions(builder.tools)}
        named = getattr(step.params, "teacher", None)
        if named is not None:  # a named teacher's content decides the output as the base's does
            part["teacher_digest"] = (teacher_digests or {})[named]
        steps.append(part)
    return {
        "format": FORMAT,
        "input": {"digest": input_digest, "fingerprint": parent_fingerprint},
        "steps": steps,
        # Steps may learn from the base and its answers to the training prompts (a distill step's named teacher
        # is in that step's part above).
        "base": base_digest if variant.steps else None,
        "training_data": data_digest if variant.steps else None,
    }


def _build_variant(
    recipe: Recipe,
    variant: Variant,
    src: Path,
    dest: Path,
    ctx: BuildContext,
    *,
    parts: dict,
    fp: str,
    base_dir: Path,
) -> None:
    started = time.perf_counter()
    info: dict = {
        "format": FORMAT,
        "matrix": recipe.matrix,
        "variant": variant.name,
        "recipe": recipe.source,
        "profile": recipe.profile,
        "base": {
            "name": recipe.base,
            "path": str(base_dir),
            "digest": parts["base"] or folder_digest(base_dir),
        },
        "input": {
            "variant": variant.parent or "base model",
            "path": str(src),
            "digest": parts["input"]["digest"],
        },
        "lineage": [
            {"variant": v.name, "steps": [s.describe() for s in v.steps]} for v in recipe.lineage(variant.name)
        ],
        "steps": [],
        "tools": tool_versions(("torch", "transformers", "safetensors", "llmcompressor", "compressed-tensors")),
        "compress_version": __version__,
        "host": host(),
        "fingerprint": fp,
        "fingerprint_parts": parts,
    }
    with atomic_folder(dest, info=info) as tmp:
        if not variant.steps:
            info["materialised"] = link_model_files(src, tmp)
        current = src
        try:
            for i, step in enumerate(variant.steps):
                last = i == len(variant.steps) - 1
                # A variant of several steps passes through temp folders beside the target (cleaned like it).
                target = tmp if last else dest.parent / f"{dest.name}.tmp-step{i}-{os.getpid()}"
                target.mkdir(exist_ok=True)
                step_started = time.perf_counter()
                result = BUILDERS[step.kind].run(current, target, step.params, ctx)
                info["steps"].append(
                    {
                        **step.describe(),
                        "seconds": round(time.perf_counter() - step_started, 2),
                        "result": result,
                    }
                )
                if current not in (src, tmp):
                    shutil.rmtree(current, ignore_errors=True)
                current = target
        finally:
            if current not in (src, tmp):
                shutil.rmtree(current, ignore_errors=True)
        if variant.steps:
            # A step that changed nothing (base distilled from itself) leaves the base's weights: reports and
            # the gate summary say "same as base" instead of presenting the copy as a compression result.
            info["same_as_base"] = same_weights_as(tmp, base_dir)
        info["seconds"] = round(time.perf_counter() - started, 2)
        info["built_at"] = datetime.now(UTC).isoformat(timespec="seconds")


def same_weights_as(folder: Path, base_dir: Path) -> bool:
    """True when ``folder``'s safetensors files are the base's, byte for byte (hard links count at once;
    files of other names or sizes differ without hashing)."""
    from compress.folders.atomic import file_sha256

    mine = sorted(p.name for p in folder.glob("*.safetensors"))
    if mine != sorted(p.name for p in base_dir.glob("*.safetensors")):
        return False
    for name in mine:
        a, b = folder / name, base_dir / name
        if a.stat().st_size != b.stat().st_size:
            return False
    return all(
        os.path.samefile(folder / n, base_dir / n) or file_sha256(folder / n) == file_sha256(base_dir / n)
        for n in mine
    )


def _training_data_digest() -> str:
    import hashlib
    import json

    texts = [p.text for p in load_training_prompts()]
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()


def summary(results: list[BuildResult]) -> str:
    width = max((len(r.variant) for r in results), default=7)
    lines = [f"{'variant':<{width}}  {'status':<10}  {'seconds':>8}  path"]
    for r in results:
        lines.append(f"{r.variant:<{width}}  {r.status:<10}  {r.seconds:8.1f}  {r.path}")
    return "\n".join(lines)


def built_manifest(folder: Path) -> dict | None:
    """The manifest of a built variant folder (None when unfinished): for tests and reports."""
    return read_manifest(folder)
