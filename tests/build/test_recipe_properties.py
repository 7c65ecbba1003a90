"""Recipe parsing as properties: a valid recipe written back out with everything explicit (names, ``from``,
every parameter inline) parses to the same recipe; anything else, however mangled, is a one-line
CompressError, never another exception (test_recipe.py pins the individual messages)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress.build.recipe import BASE, Recipe, load_recipe, parse_recipe
from compress.core.errors import CompressError


@st.composite
def recipes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid recipe: shared step tables, an optional profile, variants starting from the base or from an
    earlier one, each with 0-2 steps (a bare step name or an inline table)."""
    step_tables: dict[str, dict] = {}
    if draw(st.booleans()):
        step_tables["prune"] = {"keep": draw(st.integers(1, 40))}
    if draw(st.booleans()):
        step_tables["distill"] = {"steps": draw(st.integers(1, 100)), "lr": draw(st.floats(1e-6, 1e-2))}
    if draw(st.booleans()):
        step_tables["awq"] = {"n_grid": draw(st.integers(4, 30)), "group_size": draw(st.sampled_from([32, 64, 128]))}
    data: dict[str, Any] = {"matrix": "m", "base": draw(st.sampled_from(["smollm2", "/models/x"])), "step": step_tables}
    if draw(st.booleans()):
        data["profile"] = {"quick": {"distill": {"steps": draw(st.integers(1, 5))}}}
    names: list[str] = []
    variants = []
    for i in range(draw(st.integers(1, 6))):
        parent = draw(st.sampled_from([BASE, *names]))
        steps: list = []
        for _ in range(draw(st.integers(0 if parent == BASE else 1, 2))):
            kind = draw(st.sampled_from(["prune", "distill", "awq"]))
            if kind == "prune" and "prune" not in step_tables:
                steps.append({"step": "prune", "keep": draw(st.integers(1, 40))})
            elif draw(st.booleans()):
                steps.append(kind)
            elif kind == "distill":
                steps.append({"step": "distill", "seed": draw(st.integers(0, 9))})
            else:
                steps.append({"step": kind})
        name = f"v{i}"  # explicit names: derived ones may collide, which is an error, not what this tests
        variant: dict[str, Any] = {"name": name, "steps": steps}
        if parent != BASE:
            variant["from"] = parent
        variants.append(variant)
        names.append(name)
    data["variant"] = variants
    return data


def written_out(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as recipe data again, with nothing left to defaults or derivation."""
    return {
        "matrix": recipe.matrix,
        "base": recipe.base,
        "description": recipe.description,
        "trust_remote_code": recipe.trust_remote_code,
        "variant": [
            {
                "name": v.name,
                "from": v.parent or BASE,
                "description": v.description,
                "steps": [{"step": s.kind, **s.params.model_dump(mode="json")} for s in v.steps],
            }
            for v in recipe.variants.values()
        ],
    }


def same(a: Recipe, b: Recipe) -> None:
    assert (a.matrix, a.base, a.trust_remote_code) == (b.matrix, b.base, b.trust_remote_code)
    assert list(a.variants) == list(b.variants)
    for name in a.variants:
        va, vb = a.variants[name], b.variants[name]
        assert (va.parent, va.description) == (vb.parent, vb.description)
        assert [(s.kind, s.params) for s in va.steps] == [(s.kind, s.params) for s in vb.steps]


@settings(max_examples=80, deadline=None)
@given(data=recipes(), profile=st.sampled_from([None, "quick"]))
def test_a_valid_recipe_round_trips(data: dict[str, Any], profile: str | None) -> None:
    if profile and "profile" not in data:
        profile = None
    recipe = parse_recipe(copy.deepcopy(data), profile=profile)
    assert [v.name for v in recipe.variants.values()] == sorted(
        recipe.variants, key=lambda n: [t["name"] for t in data["variant"]].index(n)
    ), "variants start from earlier ones here, so the file's order is already a build order"
    again = parse_recipe(written_out(recipe))
    same(recipe, again)
    same(again, parse_recipe(written_out(again)))


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 50) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
KEYS = st.sampled_from(
    ["matrix", "base", "step", "profile", "variant", "name", "from", "steps", "keep", "drop", "lr", "n_grid",
     "duo_scaling", "group_size", "step", "prune", "distill", "awq", "quick", "train_layers", "x"]
)  # fmt: skip


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mangled(draw: st.DrawFn) -> dict[str, Any]:
    """A valid recipe with 1-3 random edits: a value replaced by junk, a key deleted, a junk key added."""
    data = draw(recipes())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)))
        if not path:
            data[draw(KEYS)] = draw(JUNK)
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JUNK)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(KEYS)] = draw(JUNK)
    return data


def _parses_or_explains(call) -> None:
    try:
        call()
    except CompressError as err:
        text = str(err)
        assert "\n" not in text and "Fix: " in text, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mangled(), profile=st.sampled_from([None, "quick", "full"]))
def test_a_mangled_recipe_parses_or_is_a_compress_error(data: dict[str, Any], profile: str | None) -> None:
    _parses_or_explains(lambda: parse_recipe(data, profile=profile))


@settings(max_examples=100, deadline=None)
@given(data=JUNK)
def test_any_data_at_all_parses_or_is_a_compress_error(data: Any) -> None:
    _parses_or_explains(lambda: parse_recipe(data if isinstance(data, dict) else {"variant": data}))


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=80) | st.text(max_size=80).map(str.encode))
def test_any_recipe_file_loads_or_is_a_compress_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "r.toml"
        file.write_bytes(content)
        _parses_or_explains(lambda: load_recipe(file))


def test_a_recipe_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "r.toml"
    file.write_bytes(b'base = "x"\n\xff\xfe')
    with pytest.raises(CompressError, match=rf"recipe {file} is not valid TOML \(.*utf-8.*Fix:"):
        load_recipe(file)
