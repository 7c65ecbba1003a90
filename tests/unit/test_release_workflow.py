"""The example release workflow (.github/workflows/release-gate.yml) parses, and its pieces fit this code: the
build job installs the builder extras, the gate matrix splits the eight variants into disjoint subsets that
`report merge` can join, each job uploads JUnit XML and its report, and vLLM's compile cache is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.build.recipe import BASE, load_recipe

yaml = pytest.importorskip("yaml")
WORKFLOW = Path(__file__).parents[2] / ".github" / "workflows" / "release-gate.yml"


def steps_text(job: dict) -> str:
    return "\n".join(str(s.get("run", "")) + str(s.get("uses", "")) + str(s.get("with", "")) for s in job["steps"])


def test_release_workflow_builds_gates_subsets_and_merges() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]
    assert list(jobs) == ["build", "gate", "merge"]
    build, gate, merge = (steps_text(jobs[j]) for j in ("build", "gate", "merge"))
    assert '".[compress]"' in build and "python -m compress build" in build and "actions/cache/save" in build
    assert jobs["gate"]["needs"] == "build" and set(jobs["merge"]["needs"]) == {"build", "gate"}
    assert "--gate-variants" in gate and "--junitxml" in gate and "upload-artifact" in gate
    assert jobs["gate"]["env"]["VLLM_CACHE_ROOT"].endswith(".cache/vllm") and "path': '.cache/vllm'" in gate
    assert "python -m compress report merge" in merge and "download-artifact" in merge
    # The subsets: disjoint, and together every variant of a 30-layer matrix but the baseline, each gated once.
    subsets = [entry["variants"].split(",") for entry in jobs["gate"]["strategy"]["matrix"]["include"]]
    flat = [v for subset in subsets for v in subset]
    assert len(subsets) >= 2 and len(flat) == len(set(flat))
    assert sorted(flat) == sorted(v for v in load_recipe("tiny-exaone4").variants if v != BASE)
