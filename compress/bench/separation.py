"""Evidence that the gate's quality verdicts separate: real good variants beside degraded copies of graded
severity, all gated, on the fixed prompts and again on a held-out prompt set nobody tuned on.

``make_study(matrix_dir, dest)`` builds the models folder: the matrix's good variants (hard links) and
degraded copies made by :mod:`compress.local_models.degrade` from them. ``run_study`` runs the gate (pytest,
a subprocess) over the folder and judges every model with the gate's own checks on the gate's own runs
twice: under the checked-in defaults, and under the calibrated floors of the variant it stands for (a
degraded copy of X is what a bad rebuild of X would look like, so X's floors must fail it).
``python -m compress bench separation`` is the command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from compress.core.errors import CompressError
from compress.core.fidelity import summarize
from compress.core.prompts import heldout_prompts_file
from compress.core.tasks import load_tasks
from compress.evaluation.run import ModelRun, run_from_dict
from compress.folders.matrix import BASELINE
from compress.gate.checks import GateFailure, check_fidelity, check_task_accuracy, task_verdicts
from compress.gate.child_env import child_env
from compress.gate.report import runs_file_for
from compress.gate.thresholds import Thresholds, VariantThresholds, load_thresholds
from compress.local_models import degrade
from compress.local_models.broken import link_copy

GOOD = ("compressed-l29", "compressed-l29-distilled", "base-llmc-awq", "base-distilled")
"""Real variants of a matrix that are expected to pass (those that are built)."""


@dataclass(frozen=True)
class Degraded:
    """A degraded copy: its name, the good variant it is made from, how, and the real variant it stands for (a
    build of that variant gone wrong would look like this copy, so that variant's floors must fail it)."""

    name: str
    parent: str
    kind: str
    params: dict
    stands_for: str

    def make(self, source: Path, dest: Path) -> Path:
        if self.kind == "noise":
            return degrade.perturb_weights(source, dest, **self.params)
        if self.kind == "rtn":
            return degrade.round_to_nearest(source, dest, **self.params)
        if self.kind == "drop":
            return degrade.drop_layers(source, dest, **self.params)
        raise ValueError(f"unknown kind {self.kind}")


def degraded_set(n_layers: int) -> list[Degraded]:
    """Graded severity, from barely visible to destroyed. Layer 0 is the most important layer by Block
    Influence on both local models (it turns embeddings into the residual stream every later layer reads)."""
    mid = n_layers // 2
    # A perturbed base stands for base-llmc-awq, the variant meant to stay closest to the base: base-distilled
    # may learn from another teacher (tiny EXAONE-4's does) and then is meant to move away from the base.
    return [
        Degraded("base-noise-1pct", BASELINE, "noise", {"relative_noise": 0.01, "seed": 1}, "base-llmc-awq"),
        Degraded("l29-noise-3pct", "compressed-l29", "noise", {"relative_noise": 0.03, "seed": 2}, "compressed-l29"),
        Degraded("base-noise-15pct", BASELINE, "noise", {"relative_noise": 0.15, "seed": 4}, "base-llmc-awq"),
        Degraded("base-rtn4-g64", BASELINE, "rtn", {"bits": 4, "group_size": 64}, "base-llmc-awq"),
        Degraded(
            "l29-drop-4-more",
            "compressed-l29",
            "drop",
            {"drop": [mid - 3, mid - 2, mid + 1, mid + 2]},
            "compressed-l29",
        ),
        Degraded("base-drop-first", BASELINE, "drop", {"drop": [0]}, "compressed-l29"),  # pruned the wrong layer
    ]


def make_study(matrix_dir: Path, dest: Path) -> tuple[list[str], list[Degraded]]:
    """The study's models folder: the baseline, the built good variants, and the degraded copies."""
    if not (matrix_dir / BASELINE / "config.json").is_file():
        raise CompressError(f"{matrix_dir} has no built baseline", "build the matrix first (python -m compress build)")
    dest.mkdir(parents=True, exist_ok=False)
    good = [v for v in GOOD if (matrix_dir / v / "config.json").is_file()]
    for name in (BASELINE, *good):
        link_copy(matrix_dir / name, dest / name)
    config = json.loads((matrix_dir / BASELINE / "config.json").read_text(encoding="utf-8"))
    made = []
    for d in degraded_set(int(config.get("num_hidden_layers") or config.get("num_layers"))):
        if (dest / d.parent).is_dir():
            d.make(dest / d.parent, dest / d.name)
            made.append(d)
    return good, made


def run_gate(repo: Path, models: Path, name: str, out: Path, *extra: str) -> tuple[dict, dict[str, ModelRun]]:
    """The gate's quality cases over ``models`` (a subprocess, as a user runs it); returns its report and runs."""
    report = out / f"{name}.json"
    cmd = [
        sys.executable, "-m", "pytest", "tests/gate/test_release_gate.py", "-p", "no:cacheprovider", "-q",
        f"--rootdir={repo}", "--gate-models-dir", str(models), "--gate-name", name,
        "--gate-report", str(report), *extra,
    ]  # fmt: skip
    with (out / f"{name}.log").open("w") as log:
        subprocess.run(cmd, cwd=repo, env=child_env(), stdout=log, stderr=subprocess.STDOUT, check=False)
    runs_file = runs_file_for(report)
    if not report.is_file() or not runs_file.is_file():
        raise CompressError(f"the gate wrote no report; see {out / f'{name}.log'}", "fix what the log shows")
    runs = {k: run_from_dict(v) for k, v in json.loads(runs_file.read_text(encoding="utf-8")).items()}
    return json.loads(report.read_text(encoding="utf-8")), runs


def judge(runs: dict[str, ModelRun], variant: str, baseline: str, floors: VariantThresholds, sets: tuple[str, ...],
          items: list) -> str:  # fmt: skip
    """The gate's own checks (compress.gate.checks) on the gate's runs, under ``floors``: 'pass' or what failed."""
    run, base = runs[variant], runs[baseline]
    failed = []
    q, bq = run.quality, base.quality
    if q is None or bq is None or q.error or bq.error:
        return "ERROR (quality not measured)"
    try:
        check_fidelity(variant=variant, baseline=baseline, thresholds=floors,
                       prompts=[p for name in sets for p in q.fidelity.get(name, [])])  # fmt: skip
    except GateFailure:
        failed.append("fidelity")
    if q.tasks is not None and bq.tasks is not None:
        verdicts = task_verdicts(bq.tasks, q.tasks, items)
        try:
            check_task_accuracy(variant=variant, baseline=baseline, verdicts=verdicts, items=items, mine=q.tasks,
                                base=bq.tasks, thresholds=floors)  # fmt: skip
        except GateFailure:
            failed.append("tasks")
    return "FAIL (" + ", ".join(failed) + ")" if failed else "pass"


def table(report: dict, runs: dict[str, ModelRun], degraded: list[Degraded], *, thresholds: Thresholds, gate: str,
          sets: tuple[str, ...], items: list) -> str:  # fmt: skip
    parents = {d.name: d for d in degraded}
    baseline = report["baseline"]
    head = ("variant", "made from", "avg similarity", "mean KL ± SE", "p99 KL", "top-1", "task acc (MC)",
            "MC recovery", "short acc", "verdict: defaults", "verdict: floors of what it stands for")  # fmt: skip
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    defaults = thresholds.for_variant("(defaults)", "(any)")
    for name, m in report["models"].items():
        run = runs.get(name)
        fid = [p for s in sets for p in (run.quality.fidelity.get(s, []) if run and run.quality else [])]
        fs = summarize(fid) if fid else None
        tasks = m.get("tasks") or {}
        d = parents.get(name)
        made = (
            "-" if name == baseline else (f"{d.parent}: {d.kind} {d.params} (as {d.stands_for})" if d else "real build")
        )
        own = thresholds.for_variant(gate, d.stands_for if d else name)
        cells = [
            name, made,
            "-" if m.get("avg_similarity") is None else f"{m['avg_similarity']:.3f}",
            "-" if fs is None else f"{fs.mean_kl:.4f} ± {fs.mean_kl_se:.4f}",
            "-" if fs is None else f"{fs.p99_kl:.3f}",
            "-" if fs is None else f"{fs.top1_agreement:.3f}",
            "-" if not tasks or tasks.get("mc_accuracy") is None
            else f"{tasks['mc_accuracy']:.3f} ± {tasks['mc_accuracy_se']:.3f}",
            "-" if tasks.get("mc_recovery") is None else f"{tasks['mc_recovery']:.3f} ± {tasks['mc_recovery_se']:.3f}",
            "-" if tasks.get("short_accuracy") is None else f"{tasks['short_accuracy']:.3f}",
            "baseline" if name == baseline else judge(runs, name, baseline, defaults, sets, items),
            "baseline" if name == baseline else judge(runs, name, baseline, own, sets, items),
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def run_study(
    matrix_dir: Path, work: Path, *, gate: str, repo: Path, heldout: bool = True, pytest_args: tuple[str, ...] = ()
) -> str:
    """Build the study folder, gate it on the fixed prompts (fidelity and tasks), then on the held-out prompts
    (fidelity only: the task set is the same either way), and return the markdown tables."""
    models = work / "models"
    _, degraded = make_study(matrix_dir, models)
    out = work / "reports"
    out.mkdir(parents=True, exist_ok=True)
    thresholds = load_thresholds(repo / "tests/gate/thresholds.toml")
    items = load_tasks()
    text = []
    report, runs = run_gate(repo, models, "study-fixed", out, "-k", "test_fidelity or test_task_accuracy", *pytest_args)
    text.append("### fixed prompts (the gate's 10 and the fidelity set's 122; the task set's 254 items)\n\n"
                + table(report, runs, degraded, thresholds=thresholds, gate=gate, sets=("gate", "fidelity"),
                        items=items))  # fmt: skip
    if heldout:
        held = str(heldout_prompts_file())
        report, runs = run_gate(repo, models, "study-heldout", out, "-k", "test_fidelity",
                                "--gate-fidelity-prompts", held, *pytest_args)  # fmt: skip
        for m in report["models"].values():
            m["tasks"] = None  # not measured in this run
        text.append("### held-out prompts (40, never used to set a floor; fidelity only)\n\n"
                    + table(report, runs, degraded, thresholds=thresholds, gate=gate, sets=("fidelity",),
                            items=items))  # fmt: skip
    return "\n".join(text)
