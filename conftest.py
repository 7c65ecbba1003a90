"""Repository-wide pytest plumbing: the release gate's options, markers and fixtures.

The gate itself is tests/gate/test_release_gate.py; its logic lives in compress/gate/ (never import from
this file). Without ``--models-dir`` the gate's cases are skipped and nothing here loads a model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from compress.engines.select import has_cuda
from compress.errors import CompressError
from compress.gate import cases
from compress.gate.options import DTYPES, ENGINES, junit_file_for, resolve_gate
from compress.gate.session import (
    GateSession,
    pin_worker_gpus,
    run_from_dict,
    run_to_dict,
    share_cpu_threads,
)
from compress.gate.snapshot import GoldenJSONExtension

MARKERS = (
    "gpu: needs a CUDA GPU; skipped without one. On a CUDA host every release-gate case is marked gpu too, "
    "so `pytest tests/gate/test_release_gate.py -m gpu --models-dir=DIR` runs the whole gate there",
    "gate(baseline=False, timed=False): a release-gate case, parametrised from the --models-dir options",
)
SESSION = pytest.StashKey[GateSession]()
WORKER_RUNS = pytest.StashKey[list]()
SUMMARY = pytest.StashKey[tuple]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("release gate", "release gate: variants of a model against its baseline")
    add = group.addoption
    add(
        "--models-dir",
        dest="gate_models_dir",
        default=None,
        metavar="DIR",
        help="folder holding one folder per variant (e.g. $EXAONE_COMPRESSION_HOME/models/tiny-exaone4); "
        "without it the release gate is skipped",
    )
    add(
        "--baseline",
        dest="gate_baseline",
        default="base",
        metavar="NAME",
        help="the variant the others are compared with (default: base)",
    )
    add(
        "--variants",
        dest="gate_variants",
        default=None,
        metavar="A,B",
        help="comma list of variants to gate (default: every folder in --models-dir but the baseline)",
    )
    add(
        "--gate-engine",
        dest="gate_engine",
        choices=ENGINES,
        default="auto",
        help="auto: vLLM, except 4-bit folders without CUDA, which go to HF (default: auto)",
    )
    add(
        "--gate-dtype",
        dest="gate_dtype",
        choices=DTYPES,
        default=None,
        help="activation dtype (default: float32; bfloat16 for 4-bit folders in vLLM)",
    )
    add(
        "--tensor-parallel-size",
        dest="gate_tensor_parallel_size",
        type=int,
        default=1,
        metavar="N",
        help="GPUs per model for vLLM (default: 1); under xdist each worker gets N GPUs",
    )
    add(
        "--gate-trust-remote-code",
        dest="gate_trust_remote_code",
        action="store_true",
        help="allow Python code from model folders (EXAONE 3.x); off by default",
    )
    add(
        "--gate-thresholds",
        dest="gate_thresholds",
        default=None,
        metavar="TOML",
        help="per-variant floors (default: tests/gate/thresholds.toml)",
    )
    add(
        "--gate-report",
        dest="gate_report",
        default=None,
        metavar="JSON",
        help="eval-compare style report of the run (default: reports/gate/<gate name>.json); without "
        "--junitxml a JUnit XML goes beside it as <name>-junit.xml",
    )
    add(
        "--gate-name",
        dest="gate_name",
        default=None,
        metavar="NAME",
        help="golden namespace and report name (default: the --models-dir folder's name)",
    )
    add(
        "--golden-dir",
        dest="gate_golden_dir",
        default=None,
        metavar="DIR",
        help="where golden files live (default: golden/); change them only with --snapshot-update",
    )
    add(
        "--prompts-file",
        dest="gate_prompts_file",
        default=None,
        metavar="FILE",
        help="prompts (TOML, JSON or text; default: the fixed gate prompts)",
    )
    add(
        "--gate-repeats",
        dest="gate_repeats",
        type=int,
        default=None,
        metavar="N",
        help="timed speed rounds per variant, each interleaved with the baseline on CUDA (default: 8 when a "
        "speed case runs; else batches of the answers, default 1)",
    )
    add(
        "--gate-warmup",
        dest="gate_warmup",
        type=int,
        default=None,
        metavar="N",
        help="untimed rounds before the timed ones (default: 2 when a speed case runs, else 0)",
    )
    add(
        "--gate-speed-batch",
        dest="gate_speed_batch",
        type=int,
        default=None,
        metavar="N",
        help="sequences per timed round, the prompts cycled, each exactly max_tokens long (default: each prompt "
        "once); raise it where decoding at small batch is host-bound and a variant's gain cannot show",
    )
    add(
        "--gate-gpu-memory-utilization",
        dest="gate_gpu_memory_utilization",
        type=float,
        default=None,
        metavar="F",
        help="vLLM's GPU share per engine (default: vLLM's, or 0.28 each while baselines stay loaded for timing)",
    )
    add(
        "--speed-on-cpu",
        dest="gate_speed_on_cpu",
        action="store_true",
        help="run the speed floors without CUDA (the gate's self-check only: shared-CPU timings are noise)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    opt = config.option
    setup = resolve_gate(
        models_dir=opt.gate_models_dir,
        rootdir=config.rootpath,
        baseline=opt.gate_baseline,
        variants=opt.gate_variants,
        name=opt.gate_name,
        engine=opt.gate_engine,
        dtype=opt.gate_dtype,
        tensor_parallel_size=opt.gate_tensor_parallel_size,
        trust_remote_code=opt.gate_trust_remote_code,
        thresholds_file=opt.gate_thresholds,
        golden_dir=opt.gate_golden_dir,
        report_file=opt.gate_report,
        prompts_file=opt.gate_prompts_file,
        speed_on_cpu=opt.gate_speed_on_cpu,
        warmup=opt.gate_warmup,
        repeats=opt.gate_repeats,
        speed_batch=opt.gate_speed_batch,
        gpu_memory_utilization=opt.gate_gpu_memory_utilization,
    )
    config.stash[cases.SETUP] = setup
    config.stash[WORKER_RUNS] = []
    if setup.config is None:
        return
    cfg = setup.config
    GoldenJSONExtension.configure(cfg.golden_dir, cfg.name)
    # vLLM logs ~40 INFO and WARNING lines per engine to stdout; pytest shows them under captured failures.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    # torch.cuda.is_available() (gpu marker, engines) poisons fork: vLLM's engine process would then
    # die with "Cannot re-initialize CUDA in forked subprocess" (seen on the H200); vLLM's tests spawn too.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker is None:
        # the default JUnit XML goes beside the report; a report folder that does not exist is an error the
        # cases report, so it is not created here behind the user's back
        report_dir_ok = setup.problem is None or cfg.report_file.parent.is_dir()
        if not getattr(opt, "xmlpath", None) and not opt.collectonly and report_dir_ok:
            opt.xmlpath = str(junit_file_for(cfg.report_file))
            if setup.problem is None:
                Path(opt.xmlpath).parent.mkdir(parents=True, exist_ok=True)
        if getattr(opt, "numprocesses", None) and getattr(opt, "dist", "no") == "load":
            opt.dist = "loadgroup"  # one worker per variant: no model loaded twice
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistHooks(config), "release-gate-xdist")
    else:
        pin_worker_gpus(worker, cfg.tensor_parallel_size)
        share_cpu_threads(int(config.workerinput.get("workercount", 1)))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before -m deselects: gate cases get gpu on CUDA hosts; gpu cases skip without CUDA; sort by variant."""
    setup = config.stash[cases.SETUP]
    gpu_items = [
        it
        for it in items
        if (it.get_closest_marker("gpu") or it.get_closest_marker("gate")) and not it.get_closest_marker("skip")
    ]
    if not gpu_items:
        return  # no torch import (seconds) when nothing could need CUDA
    cuda = has_cuda()
    speed_on_cpu = setup.config is not None and setup.config.speed_on_cpu
    for item in gpu_items:
        is_gate = item.get_closest_marker("gate") is not None
        if cuda and is_gate:
            item.add_marker(pytest.mark.gpu)
        if item.get_closest_marker("gpu") and not cuda and not (speed_on_cpu and is_gate):
            item.add_marker(pytest.mark.skip(reason=cases.CUDA_REASON))
    if setup.config is not None:
        cases.order_items(items, setup.config.all_variants)


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[cases.MEASURE_SPEED] = any(cases.needs_timing(it) for it in session.items)


@pytest.fixture(scope="session")
def gate_session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateSession]:
    """The gate's cache of model runs. Errors every gate case with the reason when the gate cannot run."""
    config = request.config
    setup = config.stash[cases.SETUP]
    if setup.problem is not None:
        pytest.fail(setup.problem, pytrace=False)
    if not setup.ready:
        pytest.skip(cases.SKIP_NO_GATE)
    worker = getattr(config, "workerinput", {}).get("workerid")
    shared = tmp_path_factory.getbasetemp().parent if worker else None
    measure_speed = config.stash.get(cases.MEASURE_SPEED, False)
    session = GateSession(
        setup,
        measure_speed=measure_speed,
        shared_dir=shared,
        worker=worker or "main",
    )
    config.stash[SESSION] = session
    yield session
    session.close()


@pytest.fixture
def golden(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """syrupy's ``snapshot`` stored as the gate's golden JSON files (compress/gate/snapshot.py). A separate
    fixture rather than an override of ``snapshot``, so other tests' snapshots keep syrupy's defaults."""
    return snapshot.use_extension(GoldenJSONExtension)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Workers hand their runs to the controller; the controller (or a plain run) writes the report."""
    config = session.config
    gate = config.stash.get(SESSION, None)
    if hasattr(config, "workeroutput"):
        if gate is not None:
            config.workeroutput["gate"] = {
                "runs": {name: run_to_dict(run) for name, run in gate.runs.items()},
                "loads": gate.loads,
                "warmup": gate.warmup,
                "repeats": gate.repeats,
            }
        return
    setup = config.stash.get(cases.SETUP, None)
    if setup is None or not setup.ready:
        return
    parts = list(config.stash.get(WORKER_RUNS, []))
    if gate is not None:
        parts.append({"runs": dict(gate.runs), "loads": gate.loads, "warmup": gate.warmup, "repeats": gate.repeats})
    runs = {}
    for part in parts:
        for name, run in part["runs"].items():
            runs.setdefault(name, run if not isinstance(run, dict) else run_from_dict(run))
    if not runs:
        return
    from compress.gate.report import write_gate_report

    loads = [load for part in parts for load in part["loads"]]
    try:
        written = str(write_gate_report(setup, runs, warmup=parts[0]["warmup"], repeats=parts[0]["repeats"]))
    except (CompressError, OSError, ValueError) as err:  # the verdicts stand; say the report is missing
        written = f"NOT WRITTEN: {err}"
        session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED
    config.stash[SUMMARY] = (written, loads)


class _XdistHooks:
    """Registered only when pytest-xdist is present (its hook names are unknown to pytest otherwise)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        part = getattr(node, "workeroutput", {}).get("gate")
        if part:
            self.config.stash[WORKER_RUNS].append(part)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    summary = config.stash.get(SUMMARY, None)
    if summary is None:
        return
    path, loads = summary
    setup = config.stash[cases.SETUP]
    cfg = setup.config
    terminalreporter.write_sep("-", f"release gate {cfg.name}")
    terminalreporter.write_line(f"report: {path} (+ .md table, .png plot); junit: {config.option.xmlpath}")
    terminalreporter.write_line(
        "models loaded: "
        + ", ".join(f"{x['variant']} ({x['worker']}, {x['status']}{_again(x)}{_load(x)})" for x in loads)
    )


def _load(load: dict) -> str:
    """Engine start is most of a GPU gate's wall time (cold torch.compile caches: 80-120 s a model on an H200)."""
    seconds = load.get("load_seconds")
    return f", load {seconds:.0f} s" if seconds else ""


def _again(load: dict) -> str:
    """The baseline's second load, as the timing reference of variants served another way (4-bit: bf16)."""
    again = load.get("as")
    return f", timing reference {again}" if again not in (None, "default") else ""
