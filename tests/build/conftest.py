"""Builder-test fixtures: the local models, and matrices built once per session and shared by the tests.

Building is the expensive part (the tiny EXAONE-4 matrix takes about a minute, SmolLM2's distilled l29
a few), so each matrix is built once into a session temp folder and every test reads from it. The base's
answers to the training prompts are cached under ``$EXAONE_COMPRESSION_HOME/cache`` (keyed by the base's
content), so a second session skips that generation.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from compress.build.matrix import BuildResult, build_matrix
from compress.build.recipe import Recipe, load_recipe
from compress.core import paths
from compress.folders.atomic import is_complete

TINY3_CI_VARIANTS = ["base", "base-distilled", "compressed-l29-distilled-llmc-awq"]
"""With what they start from: base, base-distilled, compressed-l29, compressed-l29-distilled and the AWQ one."""


@dataclass(frozen=True)
class BuiltMatrix:
    recipe: Recipe
    out: Path
    results: list[BuildResult]
    seconds: float

    def __getitem__(self, variant: str) -> Path:
        return self.out / variant

    def manifest(self, variant: str) -> dict:
        return json.loads((self.out / variant / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    from compress.local_models.smollm2 import make_smollm2

    return make_smollm2()


@pytest.fixture(scope="session")
def tiny_exaone4_dir() -> Path:
    from compress.local_models.tiny_exaone4 import make_tiny_exaone4

    return make_tiny_exaone4()


@pytest.fixture(scope="session")
def tiny_exaone4_teacher_dir() -> Path:
    from compress.local_models.tiny_exaone4 import make_tiny_exaone4_teacher

    return make_tiny_exaone4_teacher()


@pytest.fixture(scope="session")
def tiny_exaone3_dir() -> Path:
    from compress.local_models.tiny_exaone3 import make_tiny_exaone3

    return make_tiny_exaone3()


def _build(name: str, variants: list[str] | None = None) -> BuiltMatrix:
    recipe = load_recipe(name, profile="quick")
    out = paths.matrix_dir(recipe.matrix)
    started = time.perf_counter()
    results = build_matrix(recipe, out_dir=out, variants=variants)
    seconds = time.perf_counter() - started
    print(f"\n{name} matrix (quick): {seconds:.1f} s")
    for r in results:
        print(f"  {r.variant:<36} {r.status:<10} {r.seconds:6.1f} s")
    return BuiltMatrix(recipe, out, results, seconds)


@pytest.fixture(scope="session")
def tiny3_matrix(tiny_exaone3_dir: Path) -> BuiltMatrix:
    """The tiny EXAONE-3 variants CI builds (tox.ini: every step kind, one AWQ run), quick profile; tox builds
    them before the tests, so here they are normally reused at once."""
    return _build("tiny-exaone3", TINY3_CI_VARIANTS)


@pytest.fixture(scope="session")
def tiny_matrix(tiny_exaone4_dir: Path, tiny_exaone4_teacher_dir: Path) -> BuiltMatrix:
    """All eight tiny EXAONE-4 variants, quick profile, built once."""
    # The shared matrix folder: tox builds it before the tests, so here it is normally reused at once, and the
    # evaluation env's tests read the very folders these tests checked.
    return _build("tiny-exaone4")


@pytest.fixture(scope="session")
def smollm2_l29(smollm2_dir: Path) -> BuiltMatrix:
    """SmolLM2's compressed-l29 and compressed-l29-distilled, quick profile, as the main job builds them. CI
    does not (its distillation and the answers it trains on are ~7 of CI's 30 minutes; the tiny matrices'
    distillation tests run there): where they are not built, the test that reads them skips and says how."""
    if not is_complete(paths.matrix_dir("smollm2") / "compressed-l29-distilled"):
        pytest.skip(
            "SmolLM2's compressed-l29-distilled is not built (CI leaves it to the main job): "
            "python -m compress build smollm2 --profile quick --variants compressed-l29-distilled"
        )
    return _build("smollm2", ["compressed-l29-distilled"])
