"""Reports: the JSON record (the source of truth), and the markdown table and PNG plot derived from it.

Each file is written atomically (temp file beside it, then ``os.replace``); the table and plot share the
JSON's stem: ``run.json`` -> ``run.md``, ``run.png``.
"""

from __future__ import annotations

from pathlib import Path

from compress.reports.json_report import (
    CompareReport,
    ModelReport,
    VerifyReport,
    check_report_path,
    write_json,
)
from compress.reports.plot import plot_tradeoff
from compress.reports.table import markdown_table, write_markdown


def companion_paths(json_path: str | Path) -> dict[str, Path]:
    path = Path(json_path)
    return {"json": path, "markdown": path.with_suffix(".md"), "plot": path.with_suffix(".png")}


def write_compare_reports(report: CompareReport, json_path: str | Path) -> dict[str, Path]:
    """Write the table, the plot, then the JSON: the JSON is never newer than its companions."""
    targets = companion_paths(json_path)
    write_markdown(report, targets["markdown"])
    plot_tradeoff(report, targets["plot"])
    write_json(report, targets["json"])
    return targets


__all__ = [
    "CompareReport",
    "ModelReport",
    "VerifyReport",
    "check_report_path",
    "companion_paths",
    "markdown_table",
    "plot_tradeoff",
    "write_compare_reports",
    "write_json",
]
