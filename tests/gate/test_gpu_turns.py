"""Workers sharing a GPU: engine work overlaps, speed rounds never overlap anything (compress/gate/gpu_turns.py).

Threads stand in for xdist workers: ``flock`` locks belong to open files, so two of them conflict within one
process as between processes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from compress.gate.gpu_turns import GpuTurns


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
