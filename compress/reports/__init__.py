"""Reports: the JSON record (the source of truth), and the markdown table and PNG plot derived from it.

Each file is written atomically (temp file beside it, then ``os.replace``); the table and plot share the
JSON's stem: ``run.json`` -> ``run.md``, ``run.png``.
"""

from __future__ import annotations

from pathlib import Path

from compress.core.atomicio import check_writable_file
from compress.reports.json_report import (
    CompareReport,
    ModelReport,
    VerifyReport,
    write_json,
)
from compress.reports.plot import plot_tradeoff
from compress.reports.table import markdown_table, write_markdown


def companion_paths(json_path: str | Path) -> dict[str, Path]:
    path = Path(json_path)
    return {
        "json": path,
        "markdown": path.with_suffix(".md"),
        "plot": path.with_suffix(".png"),
        "fidelity_plot": path.with_name(f"{path.stem}-fidelity.png"),
    }


def write_compare_reports(report: CompareReport, json_path: str | Path) -> dict[str, Path]:
    """Write the table, the plots, then the JSON: the JSON is never newer than its companions. The second
    plot (speedup against teacher-forced mean KL) is made when fidelity was measured."""
    targets = companion_paths(json_path)
    write_markdown(report, targets["markdown"])
    plot_tradeoff(report, targets["plot"])
    if any(m.mean_kl is not None for m in report.models.values()):
        plot_tradeoff(report, targets["fidelity_plot"], x_axis="mean_kl")
    else:
        targets.pop("fidelity_plot")
    write_json(report, targets["json"])
    return targets


__all__ = [
    "CompareReport",
    "ModelReport",
    "VerifyReport",
    "check_writable_file",
    "companion_paths",
    "markdown_table",
    "plot_tradeoff",
    "write_compare_reports",
    "write_json",
]
