"""The eval-compare report as a markdown table: one row per model, then notes for what a row cannot say.

Speedups of a model that ran on another engine, device or dtype than the baseline are marked ``n/c`` (not
comparable): HF against vLLM timing says nothing about compression.
"""

from __future__ import annotations

from pathlib import Path

from compress.core.atomicio import atomic_file
from compress.reports.json_report import CompareReport, ModelReport

COLUMNS = (
    "model",
    "status",
    "engine",
    "load s",
    "elapsed s",
    "tok/s",
    "speedup",
    "token speedup",
    "avg similarity",
    "exact match",
    "non-empty",
    "mean KL",
    "p99 KL",
    "top-1",
    "task acc",
    "recovery",
)
NOT_COMPARABLE = "n/c"
DASH = "–"


def _num(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short(text: str | None, limit: int = 300) -> str:
    """One line of at most ``limit`` characters: the JSON report keeps the whole error."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _engine(model: ModelReport) -> str:
    e = model.engine
    return "/".join(x for x in (e.engine, e.dtype) if x) or DASH


def _speedup(model: ModelReport, value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.2f} {NOT_COMPARABLE}" if model.comparable is False else f"{value:.2f}"


def _row(model: ModelReport, n_prompts: int) -> list[str]:
    elapsed = DASH
    if model.elapsed is not None and model.timing is not None:
        elapsed = f"{model.elapsed:.2f} ±{model.timing.spread * 100:.0f}%"
    non_empty = DASH if model.non_empty_count is None else f"{model.non_empty_count}/{n_prompts}"
    name = f"{model.name} (baseline)" if model.role == "baseline" else model.name
    return [
        name,
        model.status,
        _engine(model),
        _num(model.load_seconds, 1),
        elapsed,
        _num(model.tokens_per_second, 1),
        _speedup(model, model.speedup),
        _speedup(model, model.token_speedup),
        _num(model.avg_similarity, 3),
        _num(model.exact_match, 2),
        non_empty,
        _kl(model),
        _num(model.p99_kl, 3),
        _num(model.top1_agreement, 3),
        DASH if model.tasks is None or model.tasks.mc_accuracy is None
        else f"{model.tasks.mc_accuracy:.3f} ±{model.tasks.mc_accuracy_se:.3f}",
        _num(model.task_recovery, 3),
    ]


def _kl(model: ModelReport) -> str:
    pooled = model.fidelity.get("all")
    return DASH if pooled is None else f"{pooled.mean_kl:.4f} ±{pooled.mean_kl_se:.4f}"


def notes(report: CompareReport) -> list[str]:
    """Lines under the table: how it was measured, and each caveat a row carries."""
    base = report.models[report.baseline]
    s, t = report.sampling, report.settings
    devices = sorted({m.engine.device for m in report.models.values() if m.engine.device})
    lines = [
        f"{len(report.prompts)} prompts, chat template, temperature {s.temperature}, "
        f"min_tokens {s.min_tokens}, max_tokens {s.max_tokens}; elapsed = median generation time of "
        f"{t.repeats} timed batches after {t.warmup} warm-up (load time excluded), ± (max-min)/median; "
        f"speedups against {report.baseline} ({_engine(base)}); device {', '.join(devices) or DASH}; "
        f"host {report.host.hostname}.",
    ]
    for source in report.merged_from:
        lines.append(
            f"merged: {', '.join(source.variants) or 'no candidate'} gated on host {source.host.hostname} "
            f"({source.file}, {source.created}); speedups against the baseline timed on that host."
        )
    for m in report.models.values():
        if m.comparable is False:
            lines.append(
                f"{NOT_COMPARABLE}: {m.name} ran on {_engine(m)} ({m.engine.device}), the baseline on "
                f"{_engine(base)} ({base.engine.device}): its timing is not a compression speedup."
            )
        if m.status == "failed":
            lines.append(f"failed: {m.name}: {_short(m.error)}")
        elif m.non_empty_count is not None and m.non_empty_count < len(report.prompts):
            empty = [o.id for o in m.outputs if not o.non_empty]
            lines.append(f"empty output: {m.name} on {len(empty)} prompt(s): {', '.join(empty)}")
        if m.provenance is not None and m.provenance.same_as_base:
            lines.append(f"same as base: {m.name} holds the baseline's weights (its build changed nothing).")
        if m.provenance is not None and not m.provenance.manifest:
            lines.append(f"no manifest.json: {m.name} (built elsewhere): identified by its weights hash only.")
        if m.deterministic is False:
            lines.append(f"not deterministic: {m.name} gave different greedy texts across repeats.")
    skipped = [m.name for m in report.models.values() if m.tasks is not None and m.tasks.mc_accuracy is None]
    if skipped and base.tasks is not None and base.tasks.mc_accuracy is not None:
        lines.append(
            f"multiple choice not measured for {', '.join(skipped)}: the baseline's accuracy "
            f"{base.tasks.mc_accuracy:.3f} (chance {base.tasks.chance:.2f}) cannot support a recovery (not judged)."
        )
    if base.status == "failed":
        lines.append(f"the baseline {base.name} failed, so no model was compared with it.")
    return lines


def markdown_table(report: CompareReport) -> str:
    """The table and its notes, as markdown text ending in a newline."""
    n = len(report.prompts)
    rows = [list(COLUMNS), ["---"] * len(COLUMNS)]
    rows += [_row(m, n) for m in report.models.values()]
    table = "\n".join("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return table + "\n\n" + "\n".join(f"- {_cell(line)}" for line in notes(report)) + "\n"


RANK_COLUMNS = ("rank", "variant", "passed every case", "speedup", "weights MB", "mean KL", "top-1", "task recovery")


def ship_section(report: CompareReport) -> str:
    """The variant to ship and the ranking of every candidate (gate reports), or '' (compress.reports.ranking
    holds the rule)."""
    rec = report.recommendation
    if rec is None:
        return ""
    rows = [list(RANK_COLUMNS), ["---"] * len(RANK_COLUMNS)]
    for i, r in enumerate(rec.ranking, 1):
        rows.append([
            str(i),
            f"**{r.name}**" if r.name == rec.variant else r.name,
            "yes" if r.eligible else f"no: {_short(r.why_not, 120)}",
            "not timed" if r.speedup is None else f"{r.speedup:.2f}x",
            DASH if r.weights_bytes is None else f"{r.weights_bytes / 1e6:.1f}",
            _num(r.mean_kl, 4),
            _num(r.top1_agreement, 3),
            _num(r.task_recovery, 3),
        ])  # fmt: skip
    rule = (
        "the fastest by measured speedup among the variants that passed every case"
        if rec.rule == "fastest"
        else "no speed was measured, so the smallest weights among the variants that passed every case"
    )
    table = "\n".join("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return f"## Variant to ship\n\n{rec.line}\n\nRule: {rule}; then by weights, mean KL, name.\n\n{table}\n\n"


def write_markdown(report: CompareReport, path: str | Path) -> Path:
    with atomic_file(path) as handle:
        merged = f", merged from {len(report.merged_from)} reports" if report.merged_from else ""
        handle.write(f"# eval-compare: {report.baseline} vs {len(report.models) - 1} candidate(s){merged}\n\n")
        handle.write(f"Created {report.created}.\n\n")
        handle.write(ship_section(report))
        handle.write(markdown_table(report))
    return Path(path)
