"""`python -m compress build` with a bad recipe, a bad base or prune indices that cannot fit: one line with
the fix, exit 2, and nothing written (not even the output folder). Every case is decided before a step runs,
so the base is a stub folder from compress.local_models.broken and no model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.cli import main
from compress.local_models.broken import broken_folder, checkpoint_folder

LAYERS = 6


def recipe_text(base: Path | str, body: str) -> str:
    return f'base = "{base}"\n{body}'


PRUNE = '[[variant]]\nsteps = [{{ step = "prune", keep = {keep}, drop = {drop} }}]\n'
CASES = [
    pytest.param(
        '[[variant]]\nsteps = ["sharpen"]\n',
        "variant #1 step 1: unknown step 'sharpen' (known: prune, distill, awq)",
        id="unknown-step",
    ),
    pytest.param(
        '[[variant]]\nname = "a"\nfrom = "b"\nsteps = ["distill"]\n'
        '[[variant]]\nname = "b"\nfrom = "a"\nsteps = ["awq"]\n',
        "variants start from each other in a cycle (a -> b -> a)",
        id="cycle",
    ),
    pytest.param(
        '[[variant]]\nfrom = "nope"\nsteps = ["awq"]\n', "from = 'nope' names no variant", id="from-unknown"
    ),
    pytest.param(
        '[[variant]]\nname = "base"\nsteps = ["distill"]\n',
        "a variant with steps is named 'base', the name of the base model's copy",
        id="steps-named-base",
    ),
    pytest.param(PRUNE.format(keep=5, drop="[6]"), "layer indices [6] are out of range", id="index-out-of-range"),
    pytest.param(PRUNE.format(keep=5, drop="[-1]"), "layer indices [-1] are out of range", id="negative-index"),
    pytest.param(PRUNE.format(keep=4, drop="[2, 2]"), "layer indices [2] are listed more than once", id="repeated"),
    pytest.param(
        PRUNE.format(keep=1, drop=list(range(LAYERS))),
        f"dropping {LAYERS} of {LAYERS} layers would remove every layer",
        id="every-layer",
    ),
    pytest.param(
        PRUNE.format(keep=0, drop="[0]"), "keep: Input should be greater than or equal to 1", id="keep-zero"
    ),
    pytest.param(
        '[[variant]]\nsteps = [{ step = "prune", keep = 6 }]\n',
        f"prune keep=6 does not remove anything from a model with {LAYERS} layers",
        id="keep-all",
    ),
    pytest.param(
        PRUNE.format(keep=4, drop="[1]"), "prune drop lists 1 layers, but keep=4 of 6 means dropping 2", id="count"
    ),
    pytest.param(  # checked against the layer count the step will meet: 4 after the first prune, not 6
        '[[variant]]\nname = "l4"\nsteps = [{ step = "prune", keep = 4, drop = [0, 1] }]\n'
        '[[variant]]\nfrom = "l4"\nsteps = [{ step = "prune", keep = 3, drop = [4] }]\n',
        "variant l4-l3: layer indices [4] are out of range for a model with 4 layers",
        id="chained-prune",
    ),
]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return checkpoint_folder(tmp_path / "base", layers=LAYERS)


def build(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, Path]:
    recipe = tmp_path / "r.toml"
    recipe.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    code = main(["build", str(recipe), "--out", str(out), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Fix: " in err[0], err
    return code, err[0], out


@pytest.mark.parametrize(("body", "message"), CASES)
def test_a_bad_recipe_stops_the_build_before_anything_is_written(
    tmp_path: Path, base: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, line, out = build(tmp_path, recipe_text(base, body), capsys)
    assert code == 2 and message in line, line
    assert not out.exists()


def test_a_recipe_without_base_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, line, out = build(tmp_path, '[[variant]]\nsteps = ["prune"]\n', capsys)
    assert code == 2 and "is invalid: base: Field required" in line and not out.exists()


def test_a_base_folder_that_does_not_exist_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-model"
    code, line, out = build(tmp_path, recipe_text(missing, PRUNE.format(keep=5, drop="[0]")), capsys)
    assert code == 2 and f"recipe base '{missing}' is neither a local model" in line and not out.exists()


@pytest.mark.parametrize("defect", ["no-config", "only-pickled-weights", "no-tokenizer", "unsupported-architecture"])
def test_a_broken_base_folder_is_refused(tmp_path: Path, defect: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = broken_folder(tmp_path / "base", defect)
    code, line, out = build(tmp_path, recipe_text(base, PRUNE.format(keep=5, drop="[0]")), capsys)
    assert code == 2 and line.startswith(f"error: model folder {base} ") and not out.exists(), line


def test_the_plan_of_a_good_recipe_still_works(tmp_path: Path, base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(base, PRUNE.format(keep=5, drop="[0]")), encoding="utf-8")
    assert main(["build", str(recipe), "--out", str(tmp_path / "out"), "--plan"]) == 0
    assert "compressed-l5" in capsys.readouterr().out
