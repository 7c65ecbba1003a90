"""`python -m compress init` on the local tiny EXAONE-4 source writes the matrix that the shipped
compress/build/recipes/tiny-exaone4.toml holds: the same eight variants, lineage and prune and AWQ parameters.
Distillation's parameters differ on purpose: the shipped ones were tuned on the tiny model, init writes the
ones measured on SmolLM2. Parsing only, no build (about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.build.init_recipe import init_recipe
from compress.build.recipe import Recipe, load_recipe


def shape(recipe: Recipe, *, same_params: tuple[str, ...] = ("prune", "awq")) -> dict:
    """Each variant's parent and steps; parameters for the step kinds that must agree."""
    return {
        name: (v.parent, [(s.kind, s.params if s.kind in same_params else None) for s in v.steps])
        for name, v in recipe.variants.items()
    }


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_init_recipe_of_tiny_exaone4_is_the_shipped_matrix(
    tiny_exaone4_dir: Path, tmp_path: Path, profile: str
) -> None:
    out = tmp_path / "tiny.toml"
    result = init_recipe(tiny_exaone4_dir, "tiny-exaone4", out)
    assert result.checkpoint.layers == 30 and result.checkpoint.group_size == 128
    mine, shipped = load_recipe(out, profile=profile), load_recipe("tiny-exaone4", profile=profile)
    assert mine.matrix == shipped.matrix and Path(mine.base) == tiny_exaone4_dir.resolve()
    assert list(mine.variants) == list(shipped.variants)  # the same build order too
    assert shape(mine) == shape(shipped)
