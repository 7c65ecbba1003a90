"""The release gate as a pytest plugin: its options, markers, fixtures and session hooks.

The root conftest.py registers it (``pytest_plugins = ["compress.gate.plugin"]``); the cases are
tests/gate/test_release_gate.py. Without ``--gate-models-dir`` nothing here loads a model, and the gate's cases
skip, unless they are all the run selected: a run that gates nothing errors (``NOTHING_TO_GATE``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from syrupy.assertion import SnapshotAssertion

from compress.core.errors import CompressError
from compress.engines.select import has_cuda
from compress.evaluation.quality import QualityPlan
from compress.evaluation.run import run_from_dict, run_to_dict
from compress.folders.atomic import read_manifest
from compress.folders.provenance import FolderProvenance
from compress.gate import cases
from compress.gate.gpu_turns import GpuTurns
from compress.gate.options import NOTHING_TO_GATE, OPTIONS, junit_file_for, resolve_gate
from compress.gate.session import (
    GateSession,
    pin_worker_gpus,
    share_cpu_threads,
    workers_share_a_device,
    workers_share_a_gpu,
)
from compress.gate.snapshot import GoldenJSONExtension

MARKERS = (
    "gpu: needs a CUDA GPU; skipped without one. On a CUDA host every release-gate case is marked gpu too, "
    "so `pytest tests/gate/test_release_gate.py -m gpu --gate-models-dir=DIR` runs the whole gate there",
    "gate(baseline=False, timed=False): a release-gate case, parametrised from the --gate-* options",
)
SESSION = pytest.StashKey[GateSession]()
WORKER_RUNS = pytest.StashKey[list]()
SUMMARY = pytest.StashKey[tuple]()
GATES_NOTHING = pytest.StashKey[bool]()
"""True when the run selected only gate cases and there is no models folder: those cases error."""
SHARES_GPU = pytest.StashKey[bool]()
"""True in an xdist worker whose GPU other workers' engines use too (session.workers_share_a_gpu)."""
SHARES_DEVICE = pytest.StashKey[bool]()
"""... or whose CPU they share on a host without GPUs: speed rounds then take turns (session.workers_share_a_device)."""
OUTCOMES = pytest.StashKey[dict]()
"""nodeid -> (variant, case id, timed, passed|failed|error|skipped), from the reports (the controller's)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """Every option of :data:`compress.gate.options.OPTIONS`, under ``--gate-``; the old unprefixed names
    still work for one release (``--help`` marks them deprecated; a run that uses one says so)."""
    group = parser.getgroup("release gate", "release gate: variants of a model against its baseline")
    for opt in OPTIONS:
        names = [opt.flag] + ([opt.old] if opt.old else [])
        help_text = opt.help + (f" [{opt.old}: deprecated alias, removed in 0.3]" if opt.old else "")
        kwargs: dict = {"dest": f"gate_{opt.dest}", "help": help_text}
        if opt.switch:
            kwargs.update(action="store_true", default=bool(opt.default))
        else:
            kwargs.update(default=opt.default, metavar=opt.metavar, type=opt.type, choices=opt.choices)
            kwargs = {k: v for k, v in kwargs.items() if v is not None or k == "default"}
        group.addoption(*names, **kwargs)


def deprecated_aliases(args: list[str]) -> list[str]:
    """The old option names a command line used (``--models-dir DIR`` or ``--models-dir=DIR``)."""
    old = {opt.old: opt.flag for opt in OPTIONS if opt.old}
    used = [a.split("=", 1)[0] for a in args if a.split("=", 1)[0] in old]
    return [f"{name} is deprecated, use {old[name]}" for name in dict.fromkeys(used)]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"release gate: {line}" for line in deprecated_aliases(list(config.invocation_params.args))]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    opt = config.option
    setup = resolve_gate(rootdir=config.rootpath, **{o.dest: getattr(opt, f"gate_{o.dest}") for o in OPTIONS})
    config.stash[cases.SETUP] = setup
    config.stash[WORKER_RUNS] = []
    config.stash[OUTCOMES] = {}
    if getattr(config, "workerinput", None) is None:
        config.pluginmanager.register(_Outcomes(config), "release-gate-outcomes")
    if setup.config is None:
        return
    cfg = setup.config
    GoldenJSONExtension.configure(cfg.golden_dir, cfg.name, updating=bool(opt.update_snapshots))
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
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistHooks(config), "release-gate-xdist")
    else:
        workers = int(config.workerinput.get("workercount", 1))
        config.stash[SHARES_GPU] = workers_share_a_gpu(workers, cfg.tensor_parallel_size)
        config.stash[SHARES_DEVICE] = workers_share_a_device(workers, cfg.tensor_parallel_size)
        pin_worker_gpus(worker, cfg.tensor_parallel_size)
        share_cpu_threads(workers)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before -m deselects: gate cases get gpu on CUDA hosts; gpu cases skip without CUDA; sort by variant."""
    setup = config.stash[cases.SETUP]
    gpu_items = [
        it
        for it in items
        if (it.get_closest_marker("gpu") or it.get_closest_marker("gate")) and not it.get_closest_marker("skip")
        and not (setup.config is None and it.get_closest_marker("gate"))  # gate_session skips or errors those
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
    setup = session.config.stash[cases.SETUP]
    items = session.items
    session.config.stash[GATES_NOTHING] = (
        setup.config is None and not setup.allow_empty and bool(items)
        and all(it.get_closest_marker("gate") is not None for it in items)
    )  # fmt: skip
    session.config.stash[cases.MEASURE_SPEED] = any(cases.needs_timing(it) for it in session.items)
    session.config.stash[cases.MEASURE_QUALITY] = frozenset(filter(None, (cases.measures(it) for it in session.items)))


@pytest.fixture(scope="session")
def gate_session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateSession]:
    """The gate's cache of model runs. Errors every gate case with the reason when the gate cannot run."""
    config = request.config
    setup = config.stash[cases.SETUP]
    if setup.problem is not None:
        pytest.fail(setup.problem, pytrace=False)
    if not setup.ready:
        if config.stash.get(GATES_NOTHING, False):
            pytest.fail(NOTHING_TO_GATE, pytrace=False)
        pytest.skip(cases.SKIP_NO_GATE)
    worker = getattr(config, "workerinput", {}).get("workerid")
    shared = setup.config.baseline_cache or (tmp_path_factory.getbasetemp().parent if worker else None)
    measure_speed = config.stash.get(cases.MEASURE_SPEED, False)
    wanted = config.stash.get(cases.MEASURE_QUALITY, frozenset())
    quality = QualityPlan(
        fidelity="fidelity" in wanted,
        fidelity_sets={"fidelity": setup.fidelity_prompts} if "fidelity" in wanted else {},
        tasks=setup.tasks if "tasks" in wanted else [],
        judgeable_only=True,
    )
    shares_device = config.stash.get(SHARES_DEVICE, False)
    session = GateSession(
        setup,
        measure_speed=measure_speed,
        quality=quality,
        shared_dir=shared,
        worker=worker or "main",
        shares_gpu=config.stash.get(SHARES_GPU, False),
        # the run's own temp root, never the baseline cache: turns are between this run's workers
        turns=GpuTurns(tmp_path_factory.getbasetemp().parent / "gpu-turns") if shares_device else None,
    )
    config.stash[SESSION] = session
    yield session
    session.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Tag a gate case's reports with its variant and case, for the verdicts behind the variant to ship. A plain
    attribute: pytest-xdist carries it to the controller with the report."""
    report = yield
    marker = item.get_closest_marker("gate")
    if marker is not None:
        report.gate_case = {  # type: ignore[attr-defined]
            "variant": cases.variant_of_item(item),
            "case": item.nodeid.split("::", 1)[-1],
            "timed": bool(marker.kwargs.get("timed")),
        }
    return report


class _Outcomes:
    """Each gate case's outcome, as the controller (or a plain run) receives its reports."""

    RANK: ClassVar[dict[str, int]] = {"passed": 0, "skipped": 1, "failed": 2, "error": 2}

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        tag = getattr(report, "gate_case", None)
        if not tag:
            return
        state = "passed"
        if report.failed:
            state = "failed" if report.when == "call" else "error"
        elif report.skipped:
            state = "skipped"
        outcomes = self.config.stash[OUTCOMES]
        old = outcomes.get(report.nodeid)
        if old is None or self.RANK[state] > self.RANK[old[3]]:
            outcomes[report.nodeid] = (tag["variant"], tag["case"], tag["timed"], state)


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
    from compress.gate.report import case_verdicts, write_gate_report

    loads = [load for part in parts for load in part["loads"]]
    verdicts = case_verdicts(config.stash.get(OUTCOMES, {}).values())
    ship = None
    try:
        path, report = write_gate_report(
            setup, runs, warmup=parts[0]["warmup"], repeats=parts[0]["repeats"], verdicts=verdicts
        )
        written = str(path)
        ship = report.recommendation.line if report.recommendation else None
    except (CompressError, OSError, ValueError) as err:  # the verdicts stand; say the report is missing
        written = f"NOT WRITTEN: {err}"
        session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED
    unbuilt = {
        name: FolderProvenance.from_dict(run.provenance).warning
        for name, run in runs.items()
        if run.provenance and not run.provenance.get("manifest")
    }
    config.stash[SUMMARY] = (written, loads, ship, unbuilt)


class _XdistHooks:
    """Registered only when pytest-xdist is present (its hook names are unknown to pytest otherwise)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """One variant's cases on one worker, so that no model is loaded twice (``-n N`` alone, or
        ``--dist loadgroup``). Not xdist's loadgroup: with xdist 3.8.0 here (and on the H200) it spread one
        group's cases over the workers, and two workers loaded compressed-l29 at once. Why: xdist tags each
        case by rewriting ``item._nodeid`` (``...@group``), and pytest 9.2's ``Node.nodeid`` is computed from
        ``item._id``, so the tag never shows; and a worker decides whether to tag from its own command line
        (plain ``-n N``: dist "no"), not from the switch a controller plugin makes."""
        setup = config.stash[cases.SETUP]
        if setup.config is None or config.option.dist not in ("load", "loadgroup"):
            return None
        from xdist.scheduler import LoadScopeScheduling

        ids = cases.variant_ids(setup.config.all_variants, [p.id for p in setup.prompts])

        class ByVariant(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return cases.scope_of(nodeid, ids)

        return ByVariant(config, log)

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        part = getattr(node, "workeroutput", {}).get("gate")
        if part:
            self.config.stash[WORKER_RUNS].append(part)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    setup = config.stash[cases.SETUP]
    if setup.config is None:
        empty = [o for o in config.stash.get(OUTCOMES, {}).values() if o[3] == "error"]
        if empty:  # the cases said it already, once each; the reason once more, where the run ends
            terminalreporter.write_sep("-", "release gate")
            terminalreporter.write_line(NOTHING_TO_GATE)
        return
    summary = config.stash.get(SUMMARY, None)
    if summary is None:
        return
    path, loads, ship, unbuilt = summary
    cfg = setup.config
    terminalreporter.write_sep("-", f"release gate {cfg.name}")
    terminalreporter.write_line(f"report: {path} (+ .md table, .png plot); junit: {config.option.xmlpath}")
    terminalreporter.write_line(
        "models loaded: "
        + ", ".join(f"{x['variant']} ({x['worker']}, {x['status']}{_again(x)}{_load(x)})" for x in loads)
    )
    same = [v for v in cfg.variants if (read_manifest(cfg.folder(v)) or {}).get("same_as_base")]
    if same:  # the build's manifest says so: a pass here is the baseline passing against itself, not a result
        terminalreporter.write_line(f"same as base (weights identical to {cfg.baseline}): {', '.join(same)}")
    for name, warning in unbuilt.items():
        terminalreporter.write_line(f"warning: {name}: {warning}", yellow=True)
    if ship:
        terminalreporter.write_line(ship, bold=True)


def _load(load: dict) -> str:
    """Engine start is most of a GPU gate's wall time (cold torch.compile caches: 80-120 s a model on an H200)."""
    seconds = load.get("load_seconds")
    return f", load {seconds:.0f} s" if seconds else ""


def _again(load: dict) -> str:
    """A model's second load: the baseline as the timing reference of variants served another way (4-bit
    in bf16 beside a float32 gate), or either side of a speed confirmation's fresh engine pair."""
    if load.get("role") == "confirm":
        return ", fresh pair confirming a speed reading near its floor"
    again = load.get("as")
    return f", timing reference {again}" if again not in (None, "default") else ""
