"""Merge the gate reports of one release whose variants were gated on several runners into one report.

Each runner gates a subset of the variants (``--gate-variants``) against the same baseline, so each report
holds the baseline and its own candidates. The merge is honest only when the reports measured the same
thing: the same baseline (name, folder's answers and figures: a rebuilt or other baseline answers
differently), the same engine, dtype and versions, the same prompts and sampling, the same gate settings.
Anything else is refused with the reason. Only what a runner cannot help differing is allowed to:
timings, load times, paths and the host (:data:`RUNNER_FIELDS`). A variant in two reports is an error
unless both entries are identical (the same file given twice). Each candidate keeps its own speedup,
measured against the baseline on its own runner; ``merged_from`` says which runner gated which variants.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from compress.core.errors import CompressError
from compress.reports.json_report import CompareReport, MergedSource, ModelReport, now

RUNNER_FIELDS = frozenset(
    {"model_dir", "load_seconds", "elapsed", "speedup", "token_speedup", "tokens_per_second", "timing",
     "quality_seconds", "comparable"}
)  # fmt: skip
"""A baseline entry's fields that may differ between runners: where the folder lies and how fast it ran."""
SAME_FIELDS = ("kind", "schema_version", "baseline", "prompts", "sampling", "settings")
"""Top-level fields every merged report must share (the host may differ: it is recorded per source)."""
COMPANIONS = ("runs", "speed")
"""``<stem>-runs.json`` and ``<stem>-speed.json`` beside a gate report, merged the same way when present."""


def read_report(path: str | Path) -> CompareReport:
    file = Path(path)
    if not file.is_file():
        raise CompressError(f"report {file} does not exist", "pass the .json reports the gate runs wrote")
    try:
        return CompareReport.model_validate_json(file.read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": str(exc)}
        where = ".".join(map(str, first["loc"])) or "(top level)"
        raise CompressError(
            f"{file} is not a gate or eval-compare report ({where}: {first['msg']})",
            "pass the reports/gate/<gate>.json files the gate wrote (not the -runs/-speed/-junit files)",
        ) from None


def merge_reports(reports: list[tuple[str, CompareReport]]) -> CompareReport:
    """One report from ``(label, report)`` pairs: the baseline once (the first report's), then every candidate."""
    if len(reports) < 2:
        raise CompressError("report merge needs at least two reports", "pass every runner's report")
    first_label, first = reports[0]
    for label, other in reports[1:]:
        problem = _disagreement(first, other)
        if problem:
            raise CompressError(
                f"cannot merge {label} with {first_label}: {problem}",
                "gate every subset against the same baseline folder with the same engine, dtype, versions, "
                "prompts and gate options, then merge those reports",
            )
    models: dict[str, ModelReport] = {first.baseline: first.models[first.baseline]}
    owner: dict[str, str] = {}
    sources = []
    for label, report in reports:
        mine = [m for name, m in report.models.items() if name != report.baseline]
        for model in mine:
            if model.name in models and models[model.name] != model:
                fields = _differing(models[model.name].model_dump(), model.model_dump())
                raise CompressError(
                    f"variant {model.name} is in {owner[model.name]} and {label} with different results "
                    f"({', '.join(fields[:5])})",
                    "gate each variant on one runner only (split --gate-variants into disjoint subsets), "
                    "or drop one of the two reports",
                )
            models.setdefault(model.name, model)
            owner.setdefault(model.name, label)
        sources.append(MergedSource(file=label, created=report.created, host=report.host,
                                    variants=[m.name for m in mine]))  # fmt: skip
    return first.model_copy(update={"created": now(), "models": models, "merged_from": sources})


def _disagreement(a: CompareReport, b: CompareReport) -> str | None:
    """Why two reports cannot be merged, or None."""
    for field in SAME_FIELDS:
        left, right = getattr(a, field), getattr(b, field)
        if left != right:
            if field == "prompts":
                return f"their prompt sets differ ({_prompt_difference(a, b)})"
            if field == "baseline":
                return f"their baselines differ ({left!r} vs {right!r})"
            dumped = [x.model_dump() if hasattr(x, "model_dump") else x for x in (left, right)]
            return f"their {field} differ ({', '.join(_differing(*dumped)[:5])})"
    base_a, base_b = a.models.get(a.baseline), b.models.get(b.baseline)
    if base_a is None or base_b is None:
        return "one of them holds no baseline entry"
    if base_a.status != "ok" or base_b.status != "ok":
        return f"the baseline {a.baseline} did not run in one of them (status {base_a.status} / {base_b.status})"
    ea, eb = base_a.engine, base_b.engine
    for key in ("engine", "dtype", "device"):
        if getattr(ea, key) != getattr(eb, key):
            return f"the baseline ran on {key} {getattr(ea, key)} in one and {getattr(eb, key)} in the other"
    if ea.versions != eb.versions:
        changed = sorted(k for k in set(ea.versions) | set(eb.versions) if ea.versions.get(k) != eb.versions.get(k))
        shown = ", ".join(f"{k} {ea.versions.get(k)} vs {eb.versions.get(k)}" for k in changed)
        return f"the baseline ran on other versions ({shown})"
    answers_a = {o.id: o.output for o in base_a.outputs}
    moved = [o.id for o in base_b.outputs if answers_a.get(o.id) != o.output]
    if moved:
        return (
            f"the baseline {a.baseline} answered {len(moved)} of {len(base_b.outputs)} prompts differently "
            f"({', '.join(moved[:3])}): other weights, or another kind of runner"
        )
    rest_a, rest_b = (m.model_dump(exclude=set(RUNNER_FIELDS)) for m in (base_a, base_b))
    if rest_a != rest_b:
        return f"the baseline's figures differ ({', '.join(_differing(rest_a, rest_b)[:5])})"
    return None


def _prompt_difference(a: CompareReport, b: CompareReport) -> str:
    ids_a, ids_b = [p.id for p in a.prompts], [p.id for p in b.prompts]
    only_a, only_b = sorted(set(ids_a) - set(ids_b)), sorted(set(ids_b) - set(ids_a))
    if only_a or only_b:
        return f"only in one: {', '.join(only_a[:3]) or '-'}; only in the other: {', '.join(only_b[:3]) or '-'}"
    changed = [p.id for p, q in zip(a.prompts, b.prompts, strict=False) if p != q]
    return f"same ids, other text or order: {', '.join(changed[:3])}"


def _differing(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths where two JSON-like trees differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differing(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(old, list | tuple) and isinstance(new, list | tuple) and len(old) == len(new):
        return [d for i, (x, y) in enumerate(zip(old, new, strict=True)) for d in _differing(x, y, f"{path}.{i}")]
    return [] if old == new else [path or "(all)"]


def companion_file(report_file: Path, kind: str) -> Path:
    """reports/gate/tiny-exaone4.json -> reports/gate/tiny-exaone4-<kind>.json (as the gate writes them)."""
    return report_file.with_name(f"{report_file.stem}-{kind}.json")


def merge_companions(files: list[Path], baseline: str, kind: str) -> dict | None:
    """The merged ``-runs`` or ``-speed`` data of the reports that have one (None: none has), keyed by model:
    the baseline's entry from the first file, each candidate's from the one file that holds it."""
    merged: dict = {}
    found = False
    for file in files:
        path = companion_file(file, kind)
        if not path.is_file():
            continue
        found = True
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CompressError(f"{path} is not valid JSON ({exc})", "restore it or delete it") from None
        for name, entry in data.items():
            if name in merged and name != baseline and merged[name] != entry:
                raise CompressError(f"{path} holds {name!r} as another file does, with other data", "drop one")
            merged.setdefault(name, entry)
    return merged if found else None
