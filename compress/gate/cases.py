"""Which cases the gate has: parametrisation, readable ids, marks and order. pytest plumbing only.

A gate test is marked ``@pytest.mark.gate(...)``; its parameters come from the options:

* ``variant`` and ``prompt`` -> ``test_non_empty[compressed-l29-hello]`` (variant, then the prompt's id);
* ``variant`` alone -> ``test_golden[compressed-l29]``.

``gate(baseline=True)`` includes the baseline itself (its own answers can be empty or drift from its golden);
comparisons with the baseline leave it out, since they cannot fail. ``gate(timed=True)`` marks the cases that
need repeated timed batches, ``gate(measures="fidelity"|"tasks")`` those that need quality measured while
each model is loaded (nothing is measured for a case that is not selected). Under pytest-xdist the
plugin's scheduler keeps one variant's cases on one worker (:func:`scope_of`), so each is loaded once; the
``xdist_group(<variant>)`` mark each case carries says the same to other tools.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from compress.gate.options import GateSetup

SETUP = pytest.StashKey[GateSetup]()
MEASURE_SPEED = pytest.StashKey[bool]()
MEASURE_QUALITY = pytest.StashKey[frozenset]()
SKIP_NO_GATE = "pass --gate-models-dir to run the release gate (see README: the release gate)"
CUDA_REASON = "needs a CUDA GPU"


@dataclass(frozen=True)
class SetupProblem:
    """The parameter a gate case gets when the gate cannot run; the ``gate_session`` fixture reports it."""

    message: str

    def __str__(self) -> str:
        return "gate-setup-error"


def parametrize(metafunc: pytest.Metafunc) -> None:
    """pytest_generate_tests for a gate test module."""
    marker = metafunc.definition.get_closest_marker("gate")
    if marker is None:
        return
    setup = metafunc.config.stash[SETUP]
    names = [n for n in ("variant", "prompt") if n in metafunc.fixturenames]
    if not names:
        return
    if setup.config is None:  # the gate_session fixture skips these (SKIP_NO_GATE), or errors them when they are
        # all the run selected (options.NOTHING_TO_GATE): that is only known once -m and -k have deselected
        metafunc.parametrize(names, [pytest.param(*([None] * len(names)), id="no-models-dir")])
        return
    if setup.problem is not None:
        problem = SetupProblem(setup.problem)
        metafunc.parametrize(names, [pytest.param(*([problem] * len(names)), id=str(problem))])
        return
    cfg = setup.config
    variants = cfg.all_variants if marker.kwargs.get("baseline", False) else cfg.variants
    params = []
    for variant in variants:
        marks = [pytest.mark.xdist_group(variant)]
        if "prompt" in names:
            params += [pytest.param(variant, p, id=f"{variant}-{p.id}", marks=marks) for p in setup.prompts]
        else:
            params.append(pytest.param(variant, id=variant, marks=marks))
    metafunc.parametrize(names, params)


def variant_of_item(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("variant") if callspec is not None else None
    return value if isinstance(value, str) else None


def order_items(items: list[pytest.Item], variants: tuple[str, ...]) -> None:
    """Gate cases grouped by variant (baseline first), other tests first and untouched, in place:
    a variant's failures read together, and ``-x`` stops before loading the next model."""
    rank = {v: i for i, v in enumerate(variants)}
    others = [it for it in items if it.get_closest_marker("gate") is None]
    gate = [it for it in items if it.get_closest_marker("gate") is not None]
    gate.sort(key=lambda it: rank.get(variant_of_item(it) or "", -1))
    items[:] = others + gate


def measures(item: pytest.Item) -> str | None:
    """What a selected quality case needs measured while models are loaded (``gate(measures=...)``)."""
    marker = item.get_closest_marker("gate")
    if marker is None or item.get_closest_marker("skip") is not None:
        return None
    return marker.kwargs.get("measures")


def needs_timing(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("gate")
    return marker is not None and bool(marker.kwargs.get("timed")) and item.get_closest_marker("skip") is None


def variant_ids(variants: tuple[str, ...] | list[str], prompt_ids: list[str]) -> dict[str, str]:
    """Each gate case's parameter id (``compressed-l29`` or ``compressed-l29-hello``) -> its variant."""
    ids = {f"{v}-{p}": v for v in variants for p in prompt_ids}
    return ids | {v: v for v in variants}


def scope_of(nodeid: str, ids: dict[str, str]) -> str:
    """The xdist scope of a case: its variant for gate cases (by :func:`variant_ids`), else the nodeid itself;
    an ``@group`` suffix that xdist may append is ignored."""
    if "@" in nodeid[nodeid.rfind("]") + 1 :]:
        nodeid = nodeid.rsplit("@", 1)[0]
    if not nodeid.endswith("]") or "[" not in nodeid:
        return nodeid
    return ids.get(nodeid[nodeid.index("[") + 1 : -1], nodeid)
