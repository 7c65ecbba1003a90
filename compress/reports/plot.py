"""The trade-off picture users pick a variant by: speedup against similarity to the baseline, one point each.

Filled points ran like the baseline (same engine, device, dtype); hollow ones did not, so their height is not
a compression speedup. Failed models have no point and are listed under the plot.
"""

from __future__ import annotations

import math
from pathlib import Path

from compress.core.atomicio import atomic_file
from compress.reports.json_report import CompareReport

KL_FLOOR = 1e-4
"""Where KL 0 (the baseline, an identical copy) is drawn on the log axis."""


X_AXES = {
    "avg_similarity": "avg similarity to {baseline} (rapidfuzz, 0-1)",
    "mean_kl": "teacher-forced mean KL({baseline} || model), nats per answer token (log scale)",
}
"""What a plot's x axis can be: the old text similarity, or distribution fidelity (lower is closer)."""


def plot_tradeoff(
    report: CompareReport, path: str | Path, *, metric: str = "speedup", x_axis: str = "avg_similarity"
) -> Path:
    """Save a PNG of ``metric`` (``speedup`` or ``token_speedup``) against ``x_axis`` (:data:`X_AXES`)."""
    import matplotlib

    matplotlib.use("Agg")  # no display here or on CI runners; must precede pyplot's import
    import matplotlib.pyplot as plt

    log_x = x_axis == "mean_kl"
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    try:
        missing = []
        placed: list[tuple[float, float]] = []
        top = 1.0
        for model in report.models.values():
            y = getattr(model, metric)
            x = getattr(model, x_axis)
            if x_axis == "mean_kl" and model.role == "baseline":
                x = KL_FLOOR  # the baseline against itself: 0, drawn at the left edge of the log axis
            if x is None or y is None:
                missing.append(f"{model.name} ({model.status})")
                continue
            comparable = model.comparable is not False
            color = "tab:red" if model.role == "baseline" else "tab:blue"
            if model.role != "baseline" and model.timing is not None and min(model.timing.runs) > 0:
                # The candidate's own repeats as a range: its slowest and fastest batch against the baseline.
                t = model.timing
                low, high = y * t.median / max(t.runs), y * t.median / min(t.runs)
                ax.errorbar([x], [y], yerr=[[y - low], [high - y]], fmt="none", ecolor=color, alpha=0.5, zorder=2)
                top = max(top, high)
            top = max(top, y)
            ax.scatter(
                [x],
                [y],
                s=60,
                marker="s" if model.role == "baseline" else "o",
                facecolors=color if comparable else "none",
                edgecolors=color,
                linewidths=1.5,
                zorder=3,
            )
            label = model.name if comparable else f"{model.name} (n/c: {model.engine.engine})"
            # Variants often sit close together: step each label down past the labels already near it.
            gap = (
                (lambda a, b: abs(math.log10(max(a, KL_FLOOR)) - math.log10(max(b, KL_FLOOR))) < 0.3)
                if log_x
                else (lambda a, b: abs(a - b) < 0.15)
            )
            near = sum(1 for px, py in placed if gap(px, x) and abs(py - y) < 0.06 * max(top, 1.0))
            placed.append((x, y))
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 5 - 11 * near), fontsize=8)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel(X_AXES[x_axis].format(baseline=report.baseline))
        ax.set_ylabel(f"{metric.replace('_', ' ')} vs {report.baseline} (x)")
        if log_x:
            ax.set_xscale("log")
            ax.set_xlim(KL_FLOOR / 2, max([KL_FLOOR * 10, *(px * 3 for px, _ in placed)]))
        else:
            ax.set_xlim(-0.02, 1.08)
        ax.set_ylim(0, top * 1.15)
        ax.grid(True, alpha=0.3)
        ax.set_title(
            f"eval-compare: {len(report.models) - 1} candidate(s) vs {report.baseline}, {len(report.prompts)} prompts",
            fontsize=10,
        )
        footer = (
            "bars: the candidate's fastest and slowest timed batch; "
            "hollow: other engine/device/dtype than the baseline (not comparable)"
        )
        if missing:
            footer += "\nnot plotted: " + ", ".join(missing)
        fig.text(0.01, 0.01, footer, fontsize=7, va="bottom")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        with atomic_file(path, "wb") as handle:
            fig.savefig(handle, format="png")
    finally:
        plt.close(fig)
    return Path(path)
