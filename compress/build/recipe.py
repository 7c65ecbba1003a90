"""Recipes: which variants a matrix holds, and the steps that make each one. Data, checked when loaded.

A recipe is a TOML file (``compress/build/recipes/<matrix>.toml`` ships two). Read it top to bottom::

    matrix = "smollm2"                 # models/<matrix>/<variant>
    base = "smollm2"                   # a local model (python -m compress make-models) or a folder path:
                                       # absolute, or relative to the recipe file's folder

    [step.prune]                       # parameters of each step kind, shared by every variant
    keep = 29
    [step.distill]
    steps = 60

    [profile.quick.distill]            # a profile overrides step parameters: --profile quick
    steps = 20

    [[variant]]                        # -> base (a copy of the base model)
    steps = []
    [[variant]]                        # -> compressed-l29
    steps = ["prune"]
    [[variant]]                        # -> compressed-l29-distilled
    from = "compressed-l29"            # start from another variant (default: the base model)
    steps = ["distill"]
    [[variant]]                        # a step may override parameters for this variant only
    steps = [{ step = "prune", keep = 28, drop = [13, 14] }]

Variant names come from the steps (``prune`` keeping 29 layers gives ``compressed-l29``, ``distill``
appends ``-distilled``, ``awq`` appends ``-llmc-awq``); ``name = "..."`` overrides that. Every key is
checked (pydantic ``extra="forbid"``), every problem is reported at once as one :class:`CompressError`:
unknown keys and steps, bad values, a ``from`` naming no variant, a cycle, duplicate names. Parameter
precedence: ``[step.<kind>]``, then the profile's ``[profile.<p>.<kind>]``, then the variant's inline table.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compress.core.errors import CompressError
from compress.folders.matrix import BASELINE

BASE = BASELINE
DEFAULT_PROFILE = "full"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class VariantSpec(BaseModel):
    """One ``[[variant]]`` table as written."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    from_: str = Field(default=BASE, alias="from")
    steps: list[str | dict[str, Any]] = Field(default_factory=list)
    description: str = ""


class RecipeFile(BaseModel):
    """The whole file as written."""

    model_config = ConfigDict(extra="forbid")

    matrix: str | None = None
    base: str
    description: str = ""
    trust_remote_code: bool = False
    step: dict[str, dict[str, Any]] = Field(default_factory=dict)
    profile: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    variant: list[VariantSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Step:
    kind: str
    params: BaseModel

    def describe(self) -> dict[str, Any]:
        return {"step": self.kind, "params": self.params.model_dump(mode="json")}


@dataclass(frozen=True)
class Variant:
    name: str
    parent: str | None
    """The variant this one starts from; None: the base model itself."""
    steps: tuple[Step, ...]
    description: str = ""


@dataclass(frozen=True)
class Recipe:
    matrix: str
    base: str
    profile: str | None
    variants: dict[str, Variant]
    """In build order: every variant after the one it starts from."""
    trust_remote_code: bool = False
    source: str = "<dict>"
    description: str = ""

    def lineage(self, name: str) -> list[Variant]:
        """The chain from the base model to ``name``, oldest first."""
        chain = []
        current: str | None = name
        while current is not None:
            chain.append(self.variants[current])
            current = self.variants[current].parent
        return chain[::-1]

    def select(self, names: list[str] | None) -> list[str]:
        """The named variants plus every variant they start from, in build order."""
        if not names:
            return list(self.variants)
        unknown = [n for n in names if n not in self.variants]
        if unknown:
            raise CompressError(
                f"recipe {self.source} has no variant {', '.join(map(repr, unknown))}",
                f"pick from: {', '.join(self.variants)}",
            )
        wanted = {v.name for n in names for v in self.lineage(n)}
        return [n for n in self.variants if n in wanted]

    def describe(self) -> str:
        """The resolved plan, one variant a line: what a build prints first."""
        lines = [
            f"recipe {self.source}: matrix {self.matrix}, base {self.base}, profile {self.profile or '-'}"
        ]
        for v in self.variants.values():
            start = v.parent or f"base model ({self.base})"
            steps = ", ".join(f"{s.kind}({_short(s.params)})" for s in v.steps) or "copy"
            lines.append(f"  {v.name:<36} <- {start}: {steps}")
        return "\n".join(lines)


def _short(params: BaseModel) -> str:
    fields = params.model_dump(exclude_defaults=True)
    return ", ".join(f"{k}={v}" for k, v in fields.items())


def builtin_recipes() -> dict[str, Path]:
    folder = resources.files("compress.build") / "recipes"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe path as given, or the packaged recipe of that matrix name."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or "/" in str(name_or_path):
        if not path.is_file():
            raise CompressError(
                f"recipe file {path} does not exist", "pass an existing .toml file or a matrix name"
            )
        return path
    builtin = builtin_recipes()
    if str(name_or_path) in builtin:
        return builtin[str(name_or_path)]
    raise CompressError(
        f"no recipe named {str(name_or_path)!r}",
        f"use one of {', '.join(sorted(builtin))} or the path of a .toml recipe",
    )


def load_recipe(name_or_path: str | Path, profile: str | None = None) -> Recipe:
    path = find_recipe(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CompressError(f"recipe {path} is not valid TOML ({exc})", "fix the syntax at that line") from None
    data.setdefault("matrix", path.stem)
    if isinstance(data.get("base"), str):
        data["base"] = base_relative_to(data["base"], path.parent)
    return parse_recipe(data, profile=profile, source=str(path))


def base_relative_to(base: str, recipe_dir: Path) -> str:
    """A recipe's ``base``: a local model name stays a name; a folder path (``~`` expanded) that is relative
    is taken from the recipe file's folder, not the working directory, so a recipe builds from anywhere."""
    from compress.local_models.registry import LOCAL_MODELS

    if base in LOCAL_MODELS or not base:
        return base
    folder = Path(base).expanduser()
    return str(folder if folder.is_absolute() else (recipe_dir / folder).resolve())


def parse_recipe(data: dict[str, Any], *, profile: str | None = None, source: str = "<dict>") -> Recipe:
    """Validate a recipe's data and resolve it: parameters merged, names derived, build order fixed."""
    from compress.builders import BUILDERS

    try:
        spec = RecipeFile.model_validate(data)
    except ValidationError as exc:
        raise CompressError(f"recipe {source} is invalid: {_pydantic_problems(exc)}", _FIX) from None

    problems: list[str] = []
    known = ", ".join(BUILDERS)
    for kind in spec.step:
        if kind not in BUILDERS:
            problems.append(f"[step.{kind}] is not a known step (known: {known})")
    chosen = (
        profile if profile is not None else (DEFAULT_PROFILE if DEFAULT_PROFILE in spec.profile else None)
    )
    if chosen is not None and chosen not in spec.profile:
        raise CompressError(
            f"recipe {source} has no profile {chosen!r}",
            f"use one of: {', '.join(spec.profile) or '(none defined)'}",
        )
    for prof, kinds in spec.profile.items():
        problems += [
            f"[profile.{prof}.{k}] is not a known step (known: {known})" for k in kinds if k not in BUILDERS
        ]
    overrides = spec.profile.get(chosen, {}) if chosen else {}

    # Each variant's steps, parameters merged and validated.
    resolved_steps: list[tuple[Step, ...]] = []
    for i, v in enumerate(spec.variant):
        steps = []
        for j, entry in enumerate(v.steps):
            where = f"variant {_label(v, i)} step {j + 1}"
            kind, inline = (
                (entry, {}) if isinstance(entry, str) else (entry.get("step"), _without(entry, "step"))
            )
            if not isinstance(kind, str) or kind not in BUILDERS:
                shown = kind if kind is not None else "(no 'step' key)"
                problems.append(f"{where}: unknown step {shown!r} (known: {known})")
                continue
            merged = {**spec.step.get(kind, {}), **overrides.get(kind, {}), **inline}
            try:
                steps.append(Step(kind, BUILDERS[kind].params.model_validate(merged)))
            except ValidationError as exc:
                problems.append(f"{where} ({kind}): {_pydantic_problems(exc)}")
        if not v.steps and v.from_ != BASE:
            problems.append(f"variant {_label(v, i)} starts from {v.from_!r} but has no steps")
        resolved_steps.append(tuple(steps))
    if problems:
        raise CompressError(f"recipe {source} is invalid: {'; '.join(problems)}", _FIX)

    variants = _resolve_names(spec, resolved_steps, source)
    return Recipe(
        matrix=spec.matrix or "matrix",
        base=spec.base,
        profile=chosen,
        variants=variants,
        trust_remote_code=spec.trust_remote_code,
        source=source,
        description=spec.description,
    )


def derive_name(parent: str, steps: tuple[Step, ...]) -> str:
    from compress.builders import BUILDERS

    name = parent
    for step in steps:
        name = BUILDERS[step.kind].name_for(name, step.params)
    return name


def _resolve_names(spec: RecipeFile, steps: list[tuple[Step, ...]], source: str) -> dict[str, Variant]:
    """Name every variant (a name depends on its parent's) and order them parents first; catch cycles."""
    pending = dict(enumerate(spec.variant))
    ordered: dict[str, Variant] = {}
    while pending:
        progressed = False
        for i, v in list(pending.items()):
            if v.from_ != BASE and v.from_ not in ordered:
                continue
            parent_name = BASE if v.from_ == BASE else v.from_
            name = v.name or derive_name(parent_name, steps[i])
            if not NAME_RE.match(name):
                raise CompressError(f"recipe {source}: variant name {name!r} is not a folder name", _FIX_NAME)
            if name == BASE and steps[i]:
                raise CompressError(
                    f"recipe {source}: a variant with steps is named {BASE!r}, the name of the base model's copy "
                    "(the gate's default baseline)",
                    "give it another name, or remove its steps",
                )
            if name in ordered:
                raise CompressError(
                    f"recipe {source}: two variants are named {name!r}",
                    'give one of them its own name = "...", or remove the duplicate',
                )
            ordered[name] = Variant(name, None if v.from_ == BASE else v.from_, steps[i], v.description)
            del pending[i]
            progressed = True
        if not progressed:
            break
    if pending:
        named = {v.name: v for v in pending.values() if v.name}
        for i, v in pending.items():
            seen = [v.name or f"#{i + 1}"]
            current = v.from_
            while current in named and current not in seen:
                seen.append(current)
                current = named[current].from_
            if current in seen:
                cycle = " -> ".join([*seen[seen.index(current) :], current])
                raise CompressError(
                    f"recipe {source}: variants start from each other in a cycle ({cycle})",
                    "make one of them start from the base or from a variant outside the cycle",
                )
        missing = sorted({v.from_ for v in pending.values() if v.from_ not in named})
        raise CompressError(
            f"recipe {source}: from = {', '.join(map(repr, missing))} names no variant",
            f'start from "base" or one of: {", ".join(ordered) or "(none)"}',
        )
    return ordered


def _label(v: VariantSpec, index: int) -> str:
    return repr(v.name) if v.name else f"#{index + 1}"


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: val for k, val in d.items() if k != key}


def _pydantic_problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


_FIX = "see compress/build/recipe.py for the format, or compress/build/recipes/*.toml for examples"
_FIX_NAME = "use letters, digits, '.', '_' and '-' only"
