"""The build: all eight tiny EXAONE-4 variants load and answer, manifests say what made them, an unchanged
rebuild does nothing, a changed parameter rebuilds only what depends on it, and a build killed during
distillation or AWQ leaves nothing that looks built and the next build completes."""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compress.build.matrix import build_matrix, matrix_status
from compress.build.recipe import load_recipe
from compress.folders.atomic import read_manifest
from compress.folders.checks import check_model_folder
from compress.folders.matrix import list_variants

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


def test_the_matrix_holds_eight_complete_folders(tiny_matrix) -> None:
    assert sorted(r.variant for r in tiny_matrix.results) == sorted(EIGHT)
    assert all(r.status in ("built", "up to date") for r in tiny_matrix.results)
    for name in EIGHT:
        manifest = read_manifest(tiny_matrix[name])
        assert manifest is not None, f"{name} has no complete manifest"
        check_model_folder(tiny_matrix[name])
    leftovers = [p.name for p in tiny_matrix.out.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert not leftovers


@pytest.mark.parametrize("variant", EIGHT)
def test_every_variant_loads_in_hf_and_answers(tiny_matrix, variant: str) -> None:
    from compress.core.prompts import load_prompts
    from compress.engines import SamplingConfig, open_engine

    prompts = [p.text for p in load_prompts()][:2]
    with open_engine(tiny_matrix[variant], engine="hf", dtype="float32") as engine:
        texts = engine.chat(prompts, SamplingConfig(max_tokens=12)).texts
    assert all(t.strip() for t in texts), texts


def test_manifest_records_what_made_the_folder(tiny_matrix, tiny_exaone4_dir: Path) -> None:
    manifest = tiny_matrix.manifest("compressed-l29-distilled-llmc-awq")
    assert manifest["variant"] == "compressed-l29-distilled-llmc-awq"
    assert manifest["base"]["path"] == str(tiny_exaone4_dir)
    assert manifest["input"]["variant"] == "compressed-l29-distilled"
    assert [s["step"] for lin in manifest["lineage"] for s in lin["steps"]] == ["prune", "distill", "awq"]
    assert manifest["steps"][0]["params"]["n_grid"] == 5  # the quick profile
    assert manifest["profile"] == "quick"
    assert {"torch", "transformers", "llmcompressor", "compressed-tensors"} <= set(manifest["tools"])
    assert manifest["fingerprint"] == tiny_matrix.results[-1].fingerprint
    # The content hashes are those of the files on disk.
    folder = tiny_matrix["compressed-l29-distilled-llmc-awq"]
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    base_manifest = tiny_matrix.manifest("base")
    assert base_manifest["materialised"] in ("hardlink", "copy")
    assert (tiny_matrix["base"] / "model.safetensors").read_bytes() == (
        tiny_exaone4_dir / "model.safetensors"
    ).read_bytes()


def test_unchanged_rebuild_does_no_work(tiny_matrix, capsys: pytest.CaptureFixture[str]) -> None:
    from compress.cli import main

    stamps = {n: (tiny_matrix[n] / "manifest.json").stat().st_mtime_ns for n in EIGHT}
    started = time.perf_counter()
    assert main(["build", "tiny-exaone4", "--profile", "quick", "--out", str(tiny_matrix.out)]) == 0
    seconds = time.perf_counter() - started
    out = capsys.readouterr().out
    print(f"\nunchanged rebuild of the tiny-exaone4 matrix: {seconds:.1f} s")
    assert "all 8 variants up to date" in out
    assert stamps == {n: (tiny_matrix[n] / "manifest.json").stat().st_mtime_ns for n in EIGHT}
    assert set(matrix_status(tiny_matrix.recipe, out_dir=tiny_matrix.out).values()) == {"up to date"}


def _link_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, copy_function=os.link, ignore=shutil.ignore_patterns("*.lock"))
    return dest


def test_a_changed_parameter_rebuilds_only_what_depends_on_it(tiny_matrix, tmp_path: Path) -> None:
    out = _link_tree(tiny_matrix.out, tmp_path / "m")
    text = Path(tiny_matrix.recipe.source).read_text(encoding="utf-8")
    changed = tmp_path / "tiny-exaone4.toml"
    changed.write_text(text.replace("awq = { n_grid = 5,", "awq = { n_grid = 6,"), encoding="utf-8")
    recipe = load_recipe(changed, profile="quick")
    status = matrix_status(recipe, out_dir=out)
    assert {n for n, s in status.items() if s != "up to date"} == {n for n in EIGHT if n.endswith("-llmc-awq")}
    assert status["base-llmc-awq"] == "stale: steps.0.params.n_grid changed"
    results = build_matrix(recipe, out_dir=out, variants=["compressed-l29-llmc-awq"])
    assert [(r.variant, r.status) for r in results] == [
        ("compressed-l29", "up to date"),
        ("compressed-l29-llmc-awq", "built"),
    ]
    assert read_manifest(out / "compressed-l29-llmc-awq")["steps"][0]["params"]["n_grid"] == 6


def test_force_rebuilds_the_named_variant(tiny_matrix, tmp_path: Path) -> None:
    out = _link_tree(tiny_matrix.out, tmp_path / "m")
    results = build_matrix(tiny_matrix.recipe, out_dir=out, variants=["base"], force=True)
    assert [(r.variant, r.status) for r in results] == [("base", "built")]


# --- killed builds -------------------------------------------------------------------------------------

KILL_RECIPE = """
base = "{base}"
[step.prune]
keep = 29
drop = [0]
[step.distill]
steps = {steps}
[step.awq]
n_grid = {n_grid}
num_samples = 42
[[variant]]
steps = ["prune", "distill"]
[[variant]]
steps = ["awq"]
"""


def _run_until(cmd: list[str], marker: str, timeout: float = 240) -> tuple[subprocess.Popen, str]:
    """Start ``cmd``; once ``marker`` appears in its output, SIGKILL it (no cleanup handlers run)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while marker.encode() not in seen:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(
                    f"{marker!r} never appeared; output tail:\n{seen[-3000:].decode(errors='replace')}"
                )
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                seen += os.read(proc.stdout.fileno(), 65536)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    return proc, seen.decode(errors="replace")


@pytest.mark.parametrize(
    ("variant", "marker"),
    [
        pytest.param("compressed-l29-distilled", "distill step 2/", id="during-distillation"),
        pytest.param("base-llmc-awq", "Grid search", id="during-awq"),
    ],
)
def test_a_killed_build_leaves_nothing_that_looks_built(
    tiny_matrix, tiny_exaone4_dir: Path, tmp_path: Path, variant: str, marker: str
) -> None:
    """tiny_matrix first: the base's answers are cached, so the killed run reaches its step quickly. The
    distilled variant is pruned first: distilling the base from itself is skipped (nothing to learn)."""
    slow = tmp_path / "slow.toml"
    slow.write_text(KILL_RECIPE.format(base=tiny_exaone4_dir, steps=100_000, n_grid=1000), encoding="utf-8")
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "compress", "build", str(slow), "--out", str(out), "--variants", variant]
    proc, _ = _run_until(cmd, marker)
    assert proc.returncode == -signal.SIGKILL

    dest = out / variant
    assert read_manifest(dest) is None, "a killed build left a folder that looks built"
    assert list(out.glob(f"{variant}.tmp-*")), "the kill came before the step started writing"
    assert matrix_status(load_recipe(slow), out_dir=out)[variant] == "not built"
    assert list_variants(out, "base") == [], "the gate must not take the killed build's folders for variants"

    fast = tmp_path / "fast.toml"
    fast.write_text(KILL_RECIPE.format(base=tiny_exaone4_dir, steps=2, n_grid=3), encoding="utf-8")
    results = build_matrix(load_recipe(fast), out_dir=out, variants=[variant])
    assert [(r.variant, r.status) for r in results] == [(variant, "built")]
    assert read_manifest(dest) is not None
    assert not list(out.glob(f"{variant}.tmp-*")), "the next build must clear the killed build's temp folder"
