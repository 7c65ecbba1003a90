"""Workers sharing a GPU: engine work overlaps, speed rounds never overlap anything (compress/gate/gpu_turns.py).

Threads stand in for xdist workers: ``flock`` locks belong to open files, so two of them conflict within one
process as between processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from fake_engine import FakeEngine  # tests/gate/fake_engine.py

from compress.engines import SamplingConfig
from compress.gate.gpu_turns import GpuTurns
from compress.gate.options import resolve_gate
from compress.gate.session import GateSession

REPO = Path(__file__).resolve().parents[2]


def _hold(turns: GpuTurns, kind: str, seconds: float, log: list, name: str, started: threading.Event) -> None:
    started.set()
    with getattr(turns, kind)():
        log.append((name, "in", time.monotonic()))
        time.sleep(seconds)
        log.append((name, "out", time.monotonic()))


def _span(log: list, name: str) -> tuple[float, float]:
    times = {event: t for who, event, t in log if who == name}
    return times["in"], times["out"]


def _start(folder: Path, kind: str, seconds: float, log: list, name: str) -> threading.Thread:
    started = threading.Event()
    thread = threading.Thread(target=_hold, args=(GpuTurns(folder), kind, seconds, log, name, started))
    thread.start()
    started.wait()
    return thread


def test_engine_work_overlaps_and_timing_waits_for_it_then_runs_alone(tmp_path: Path) -> None:
    log: list = []
    a = _start(tmp_path, "shared", 0.4, log, "start-a")
    b = _start(tmp_path, "shared", 0.4, log, "start-b")
    time.sleep(0.1)
    timer = _start(tmp_path, "exclusive", 0.3, log, "timer")
    time.sleep(0.1)  # a new engine start arrives while the timer waits: it must not jump the queue
    late = _start(tmp_path, "shared", 0.1, log, "start-late")
    for thread in (a, b, timer, late):
        thread.join(10)
    (a_in, a_out), (b_in, b_out) = _span(log, "start-a"), _span(log, "start-b")
    t_in, t_out = _span(log, "timer")
    late_in, _ = _span(log, "start-late")
    assert b_in < a_out and a_in < b_out  # two engine starts at once
    assert t_in >= max(a_out, b_out)  # timing waited for both
    assert late_in >= t_out  # and the late start waited for the timer (the turnstile)


def test_timing_inside_a_shared_turn_gives_it_up_and_takes_it_back(tmp_path: Path) -> None:
    """The gate times a variant while its engine is loaded, i.e. inside the shared turn of its load: two workers
    doing that at once must not deadlock, and each gets its shared turn back."""
    log: list = []

    def worker(name: str) -> None:
        turns = GpuTurns(tmp_path)
        with turns.shared():
            time.sleep(0.1)
            with turns.exclusive():
                log.append((name, "in", time.monotonic()))
                time.sleep(0.2)
                log.append((name, "out", time.monotonic()))
            assert turns._depth == 1 and turns._fd is not None  # the shared turn is held again

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads), "deadlock"
    (in1, out1), (in2, out2) = _span(log, "w1"), _span(log, "w2")
    assert out1 <= in2 or out2 <= in1  # the two timed sections never overlapped


# --- two gate sessions in two processes, as two xdist workers on one GPU ------------------------------------


class _LoggingEngine(FakeEngine):
    """Sleeps to load and to generate, and logs each interval: (pid, kind, start, end)."""

    log_path: ClassVar[Path]

    def __init__(self, model_dir: object, **kwargs: object) -> None:
        super().__init__(model_dir, **kwargs)
        start = time.monotonic()
        time.sleep(0.15)
        self.load_seconds = time.monotonic() - start
        self._note("load", start)

    def _note(self, kind: str, start: float) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps([os.getpid(), kind, start, time.monotonic()]) + "\n")

    def seconds(self, prompts: list[str], sampling: SamplingConfig) -> float:
        start = time.monotonic()
        time.sleep(0.03)
        self._note("timed" if sampling.ignore_eos else "work", start)  # the speed workload is fixed-length
        return 0.03


def _worker(models: Path, shared: Path, turns_dir: Path | None, variants: list[str]) -> None:
    setup = resolve_gate(models_dir=str(models), rootdir=REPO)
    turns = GpuTurns(turns_dir) if turns_dir is not None else None
    gate = GateSession(setup, measure_speed=True, shared_dir=shared, worker=f"pid{os.getpid()}", turns=turns)
    for variant in variants:
        gate.speed(variant)
    gate.close()


def _overlaps_of_timing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, turns: bool) -> int:
    """How many timed calls of one process overlapped anything another process did on the 'GPU'."""
    import compress.evaluation.run as run_module
    import compress.gate.session as session_module

    monkeypatch.setattr(run_module, "open_engine", _LoggingEngine)
    monkeypatch.setattr(session_module, "open_engine", _LoggingEngine)
    monkeypatch.setattr(session_module, "has_cuda", lambda: False)
    root = tmp_path / ("turns" if turns else "free-for-all")
    for name in ("base", "a", "b", "c", "d"):
        (root / "m" / name).mkdir(parents=True)
    _LoggingEngine.log_path = root / "log.jsonl"
    fork = multiprocessing.get_context("fork")  # the children keep the fake engine patched in
    procs = [
        fork.Process(target=_worker, args=(root / "m", root / "shared", root / "t" if turns else None, vs))
        for vs in (["a", "b"], ["c", "d"])
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    spans = [json.loads(line) for line in _LoggingEngine.log_path.read_text().splitlines()]
    assert {pid for pid, *_ in spans} == {p.pid for p in procs}
    return sum(
        1
        for pid, kind, start, end in spans
        if kind == "timed"
        for other, _, o_start, o_end in spans
        if other != pid and o_start < end and start < o_end
    )


def test_two_workers_sessions_never_time_while_the_other_loads_or_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate's own use of the turns (loads and answers shared, rounds exclusive), in two processes; without
    turns the same two workers do time over each other's work, so the check can fail."""
    assert _overlaps_of_timing(tmp_path, monkeypatch, turns=True) == 0
    assert _overlaps_of_timing(tmp_path, monkeypatch, turns=False) > 0


def test_workers_take_turns_where_they_share_a_gpu_or_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from compress.gate.session import workers_share_a_device

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("compress.gate.session.visible_gpu_count", lambda: 0)
    assert workers_share_a_device(2) and not workers_share_a_device(1)  # a CPU host: every worker on its cores
    monkeypatch.setattr("compress.gate.session.visible_gpu_count", lambda: 2)
    assert not workers_share_a_device(2)  # a GPU each: timings cannot disturb each other
    assert workers_share_a_device(4) and workers_share_a_device(2, tensor_parallel_size=2)
