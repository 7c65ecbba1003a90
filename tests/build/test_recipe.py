"""Recipes: the shipped matrices resolve to the eight variants; bad recipes fail at load with the fix."""

from __future__ import annotations

import copy
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compress.build.recipe import BASE, builtin_recipes, load_recipe, parse_recipe
from compress.core.errors import CompressError

EIGHT = [
    "base",
    "base-distilled",
    "compressed-l29",
    "base-llmc-awq",
    "compressed-l29-distilled",
    "compressed-l29-llmc-awq",
    "base-distilled-llmc-awq",
    "compressed-l29-distilled-llmc-awq",
]


def minimal(**extra: object) -> dict:
    data = {
        "matrix": "m",
        "base": "smollm2",
        "step": {"prune": {"keep": 29}},
        "variant": [{"steps": ["prune"]}],
    }
    data.update(extra)
    return data


@pytest.mark.parametrize("matrix", ["smollm2", "tiny-exaone4", "tiny-exaone3"])
@pytest.mark.parametrize("profile", ["quick", "full"])
def test_shipped_recipes_hold_the_eight_variants(matrix: str, profile: str) -> None:
    recipe = load_recipe(matrix, profile=profile)
    assert sorted(recipe.variants) == sorted(EIGHT)
    assert recipe.matrix == matrix and recipe.profile == profile
    # Every variant comes after the one it starts from, and its lineage spells its name.
    order = list(recipe.variants)
    for name, variant in recipe.variants.items():
        if variant.parent:
            assert order.index(variant.parent) < order.index(name)
    kinds = [s.kind for v in recipe.lineage("compressed-l29-distilled-llmc-awq") for s in v.steps]
    assert kinds == ["prune", "distill", "awq"]


def test_quick_profile_overrides_only_what_it_names() -> None:
    full = load_recipe("smollm2", profile="full")
    quick = load_recipe("smollm2", profile="quick")
    f_distill = full.variants["base-distilled"].steps[0].params
    q_distill = quick.variants["base-distilled"].steps[0].params
    assert q_distill.steps < f_distill.steps
    named = ("steps", "batch_size", "lr", "lr_schedule")  # [profile.quick] distill = {...} in smollm2.toml
    assert q_distill.model_copy(update={k: getattr(f_distill, k) for k in named}) == f_distill
    q_awq = quick.variants["base-llmc-awq"].steps[0].params
    assert q_awq.group_size == 64  # SmolLM2: 576 columns are not divisible by 128
    assert full.variants["compressed-l29"].steps == quick.variants["compressed-l29"].steps


def test_default_profile_is_full() -> None:
    assert load_recipe("tiny-exaone4").profile == "full"


def test_builtin_recipes_are_packaged() -> None:
    assert {"smollm2", "tiny-exaone4", "tiny-exaone3"} <= set(builtin_recipes())


def test_inline_parameters_and_explicit_names() -> None:
    recipe = parse_recipe(
        minimal(
            variant=[
                {"steps": [{"step": "prune", "keep": 28, "drop": [3, 7]}]},
                {"name": "my-l29", "steps": ["prune"]},
                {"from": "my-l29", "steps": ["distill"]},
            ]
        )
    )
    assert list(recipe.variants) == ["compressed-l28", "my-l29", "my-l29-distilled"]
    assert recipe.variants["compressed-l28"].steps[0].params.drop == (3, 7)
    assert recipe.select(["my-l29-distilled"]) == ["my-l29", "my-l29-distilled"]


# --- properties -------------------------------------------------------------------------------------

STEP_SUFFIX = {"distill": "-distilled", "awq": "-llmc-awq"}


@st.composite
def variant_trees(draw: st.DrawFn) -> tuple[list[dict], dict[str, str]]:
    """A random tree of variants: each starts from the base or an earlier one, adding one step.

    Returns the ``[[variant]]`` tables and the name each must get, computed independently of the code.
    """
    tables: list[dict] = []
    expected: dict[str, str] = {}
    names: list[str] = []
    for _ in range(draw(st.integers(1, 8))):
        parent = draw(st.sampled_from([BASE, *names]))
        kind = draw(st.sampled_from(["prune", "distill", "awq"]))
        keep = draw(st.integers(1, 40))
        if kind == "prune":
            name = f"compressed-l{keep}" if parent == BASE else f"{parent}-l{keep}"
            step: object = {"step": "prune", "keep": keep}
        else:
            name = parent + STEP_SUFFIX[kind]
            step = kind
        if name in names:
            continue
        table: dict = {"steps": [step]}
        if parent != BASE:
            table["from"] = parent
        tables.append(table)
        names.append(name)
        expected[name] = parent
    return tables, expected


@settings(max_examples=60, deadline=None)
@given(tree=variant_trees(), shuffle=st.randoms())
def test_names_come_from_steps_in_any_file_order(tree: tuple[list[dict], dict[str, str]], shuffle) -> None:
    tables, expected = tree
    shuffle.shuffle(tables)  # the file's order must not matter
    recipe = parse_recipe(minimal(variant=tables))
    assert set(recipe.variants) == set(expected)
    order = list(recipe.variants)
    for name, parent in expected.items():
        variant = recipe.variants[name]
        assert variant.parent == (None if parent == BASE else parent)
        if variant.parent:
            assert order.index(variant.parent) < order.index(name)
        depth, current = 0, name
        while current != BASE:
            depth, current = depth + 1, expected[current]
        assert len(recipe.lineage(name)) == depth


@settings(max_examples=40, deadline=None)
@given(
    key=st.text(string.ascii_lowercase + "_", min_size=1, max_size=12),
    where=st.sampled_from(["top", "variant", "step"]),
)
def test_any_unknown_key_is_refused(key: str, where: str) -> None:
    data = minimal()
    if where == "top":
        if key in {"matrix", "base", "description", "trust_remote_code", "step", "profile", "variant"}:
            return
        data[key] = 1
    elif where == "variant":
        if key in {"name", "from", "steps", "description"}:
            return
        data["variant"][0][key] = 1
    else:
        if key in {"keep", "drop", "calibration_samples", "max_answer_tokens", "device"}:
            return
        data["step"]["prune"][key] = 1
    with pytest.raises(CompressError, match=rf"{key}: unknown key.*Fix:"):
        parse_recipe(data)


# --- errors -----------------------------------------------------------------------------------------


def _cycle() -> dict:
    return minimal(
        variant=[
            {"name": "a", "from": "b", "steps": ["distill"]},
            {"name": "b", "from": "a", "steps": ["awq"]},
        ]
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(minimal(variant=[{"steps": ["prunee"]}]), "unknown step 'prunee'", id="unknown-step"),
        pytest.param(
            minimal(step={"quantize": {}}), r"\[step.quantize\] is not a known step", id="unknown-step-table"
        ),
        pytest.param({"matrix": "m", "variant": [{"steps": []}]}, "base: Field required", id="missing-base"),
        pytest.param(_cycle(), r"cycle \(a -> b -> a\)", id="cycle"),
        pytest.param(
            minimal(variant=[{"name": "a", "from": "a", "steps": ["distill"]}]),
            r"cycle \(a -> a\)",
            id="self-cycle",
        ),
        pytest.param(
            minimal(variant=[{"from": "nope", "steps": ["awq"]}]),
            "'nope' names no variant",
            id="from-unknown",
        ),
        pytest.param(
            minimal(variant=[{"steps": ["prune"]}, {"steps": ["prune"]}]), "two variants are named", id="dup"
        ),
        pytest.param(minimal(step={"prune": {"keep": 0}}), "greater than or equal to 1", id="bad-value"),
        pytest.param(
            minimal(step={"prune": {"keep": 29, "kepp": 3}}), "kepp: unknown key", id="typo-in-step"
        ),
        pytest.param(minimal(variant=[]), "variant: List should have at least 1 item", id="no-variants"),
        pytest.param(minimal(variant=[{"from": "x", "steps": []}]), "has no steps", id="empty-non-base"),
        pytest.param(
            minimal(variant=[{"name": "a/b", "steps": ["prune"]}]), "not a folder name", id="bad-name"
        ),
        pytest.param(
            minimal(profile={"quick": {"prunes": {}}}), r"\[profile.quick.prunes\]", id="profile-step"
        ),
    ],
)
def test_bad_recipes_fail_with_one_line_and_a_fix(data: dict, message: str) -> None:
    with pytest.raises(CompressError, match=message) as err:
        parse_recipe(copy.deepcopy(data))
    text = str(err.value)
    assert "\n" not in text and "Fix:" in text


def test_every_problem_is_reported_at_once() -> None:
    data = minimal(variant=[{"steps": ["prunee"]}, {"steps": [{"step": "distill", "lr": -1}]}])
    with pytest.raises(CompressError) as err:
        parse_recipe(data)
    assert "prunee" in str(err.value) and "lr" in str(err.value)


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(CompressError, match=r"no profile 'fast'.*quick"):
        load_recipe("smollm2", profile="fast")


def test_recipe_file_errors(tmp_path: Path) -> None:
    with pytest.raises(CompressError, match="does not exist"):
        load_recipe(tmp_path / "missing.toml")
    with pytest.raises(CompressError, match=r"no recipe named 'nope'.*smollm2"):
        load_recipe("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("base = \n", encoding="utf-8")
    with pytest.raises(CompressError, match="not valid TOML"):
        load_recipe(bad)


def test_missing_base_folder_fails_before_building(tmp_path: Path) -> None:
    from compress.build.matrix import resolve_base

    with pytest.raises(CompressError, match="neither a local model"):
        resolve_base(str(tmp_path / "no-such-model"))


def test_cli_reports_a_bad_recipe_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from compress.cli import main

    recipe = tmp_path / "r.toml"
    recipe.write_text('base = "smollm2"\n[[variant]]\nsteps = ["sharpen"]\n', encoding="utf-8")
    assert main(["build", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unknown step 'sharpen'" in err and "\n" not in err


def test_cli_plan_prints_the_resolved_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    from compress.cli import main

    assert main(["build", "tiny-exaone4", "--profile", "quick", "--plan"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EIGHT) and "profile quick" in out
