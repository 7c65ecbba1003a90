"""The speed verdict: timed at the serving dtype on CUDA, and confirmed by a fresh engine pair near its floor.

A fake engine stands in for vLLM: its seconds are the folder's slowness times a bias drawn once per engine
start, the way a fresh pair of real engines of the same model read 0.899 on the H200 (README "Speed gate under
noise").
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from fake_engine import FakeEngine  # tests/gate/fake_engine.py

from compress.engines import SamplingConfig
from compress.evaluation.speed import SpeedRounds
from compress.gate.checks import GateFailure, check_speedup
from compress.gate.options import resolve_gate
from compress.gate.session import CONFIRM_MARGIN, SERVING_DTYPE, SHARED_GPU_MEMORY, GateSession, near_floor
from compress.gate.thresholds import load_thresholds

REPO = Path(__file__).resolve().parents[2]


class _StartBiasedEngine(FakeEngine):
    slowness: ClassVar[dict[str, float]] = {}
    biases: ClassVar[dict[str, list[float]]] = {}
    """Per folder, the bias of each successive engine start (the last one repeats)."""
    starts: ClassVar[list[tuple[str, str]]] = []
    opened: ClassVar[list[_StartBiasedEngine]] = []

    def __init__(self, model_dir: object, **kwargs: object) -> None:
        super().__init__(model_dir, **kwargs)
        self.dtype, self.load_seconds = str(kwargs.get("dtype")), 0.1
        seen = sum(1 for f, _ in self.starts if f == self.folder)
        queue = self.biases.get(self.folder, [1.0])
        self.bias = queue[min(seen, len(queue) - 1)]
        self.starts.append((self.folder, self.dtype))
        self.opened.append(self)

    def seconds(self, prompts: list[str], sampling: SamplingConfig) -> float:
        return self.slowness[self.folder] * self.bias


@pytest.fixture
def fake_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import compress.evaluation.run as run_module
    import compress.gate.session as session_module

    monkeypatch.setattr(run_module, "open_engine", _StartBiasedEngine)
    monkeypatch.setattr(session_module, "open_engine", _StartBiasedEngine)
    _StartBiasedEngine.starts, _StartBiasedEngine.opened = [], []

    def make(slowness: dict[str, float], biases: dict[str, list[float]], *, cuda: bool = False, dtype=None):
        monkeypatch.setattr(session_module, "has_cuda", lambda: cuda)
        _StartBiasedEngine.slowness, _StartBiasedEngine.biases = slowness, biases
        for name in slowness:
            (tmp_path / "m" / name).mkdir(parents=True, exist_ok=True)
        setup = resolve_gate(models_dir=str(tmp_path / "m"), rootdir=REPO, dtype=dtype)
        return GateSession(setup, measure_speed=True)

    return make


def _floor(tmp_path: Path, variant: str, speedup: float):
    path = tmp_path / "floors.toml"
    path.write_text(f"[gates.m.variants.{variant}]\nspeedup = {speedup}\n", encoding="utf-8")
    return load_thresholds(path).for_variant("m", variant)


def test_a_good_variant_whose_first_pair_read_low_passes_on_the_mean_of_two_fresh_pairs(
    fake_gate, tmp_path: Path
) -> None:
    # the first start of "good" came up 14 % slow (0.877x, just above a 0.85 floor: near it)
    gate = fake_gate({"base": 1.0, "good": 1.0}, {"good": [1.14, 1.0]})
    rounds = gate.speed("good", floor=0.85)
    assert rounds.confirmation is not None and len(rounds.pairs) == 2
    assert rounds.paired.paired == pytest.approx(1 / 1.14) and rounds.confirmation.speedup == pytest.approx(1.0)
    assert rounds.speedup == pytest.approx((1 / 1.14 + 1.0) / 2)
    assert check_speedup(variant="good", baseline="base", rounds=rounds, thresholds=_floor(tmp_path, "good", 0.85))
    confirm = [(x["variant"], x.get("role")) for x in gate.loads if x.get("role") == "confirm"]
    assert confirm == [("base", "confirm"), ("good", "confirm")]  # a fresh pair: the baseline too
    shares = [e.kwargs.get("gpu_memory_utilization") for e in _StartBiasedEngine.opened]
    assert shares == [SHARED_GPU_MEMORY] * 2 + [SHARED_GPU_MEMORY / 2] * 2  # the pair beside the resident baseline
    assert gate.speed("good", floor=0.85) is rounds  # measured once
    back = SpeedRounds.from_dict(rounds.to_dict())  # the runs file keeps both pairs
    assert back.speedup == pytest.approx(rounds.speedup) and back.confirmation is not None
    gate.close()


def test_a_slow_variant_that_one_biased_pair_carried_over_the_floor_is_caught(fake_gate, tmp_path: Path) -> None:
    # 1.3x slower; its first pair's baseline started 14 % slow, so that pair read 0.88x (above the 0.85 floor)
    gate = fake_gate({"base": 1.0, "slow": 1.3}, {"base": [1.14, 1.0]})
    rounds = gate.speed("slow", floor=0.85)
    assert rounds.paired.paired == pytest.approx(1.14 / 1.3) and rounds.paired.paired > 0.85
    with pytest.raises(GateFailure) as failure:
        check_speedup(variant="slow", baseline="base", rounds=rounds, thresholds=_floor(tmp_path, "slow", 0.85))
    message = str(failure.value)
    assert "mean of 2 fresh engine pairs' medians (0.88x, 0.77x)" in message
    assert "slow (pair 2)" in message and "base (pair 1)" in message
    gate.close()


def test_readings_far_from_the_floor_load_nothing_more(fake_gate) -> None:
    gate = fake_gate({"base": 1.0, "fast": 0.5, "slow2x": 2.0}, {})
    assert gate.speed("fast", floor=0.85).confirmation is None  # 2.0x
    assert gate.speed("slow2x", floor=0.85).confirmation is None  # 0.5x: failed without doubt
    assert not [x for x in gate.loads if x.get("role") == "confirm"]
    assert near_floor(0.85 + CONFIRM_MARGIN, 0.85) and not near_floor(0.85 + CONFIRM_MARGIN + 0.01, 0.85)
    gate.close()


def test_on_cuda_every_engine_runs_at_the_serving_dtype_unless_the_user_chose(fake_gate) -> None:
    gate = fake_gate({"base": 1.0, "good": 1.0}, {}, cuda=True)
    gate.speed("good")
    assert {dtype for _, dtype in _StartBiasedEngine.starts} == {SERVING_DTYPE}
    assert gate.runs["good"].speed.dtype == SERVING_DTYPE
    assert len(_StartBiasedEngine.starts) == 2  # one engine per model: the baseline's answers time it too
    gate.close()
    _StartBiasedEngine.starts = []
    gate = fake_gate({"base": 1.0, "good": 1.0}, {}, cuda=True, dtype="float32")
    gate.speed("good")
    assert {dtype for _, dtype in _StartBiasedEngine.starts} == {"float32"}
    gate.close()
    _StartBiasedEngine.starts = []
    gate = fake_gate({"base": 1.0, "good": 1.0}, {}, cuda=False)
    gate.speed("good")
    assert {dtype for _, dtype in _StartBiasedEngine.starts} == {"None"}  # the folder's default (float32)
    gate.close()


def test_a_confirmation_that_cannot_load_fails_the_speed_case_in_one_line(fake_gate, monkeypatch) -> None:
    gate = fake_gate({"base": 1.0, "good": 1.0}, {"good": [1.14, 1.0]})
    original = _StartBiasedEngine.__init__

    def second_start_fails(self, model_dir, **kwargs):
        if sum(1 for f, _ in _StartBiasedEngine.starts if f == "good") == 1 and str(model_dir).endswith("good"):
            raise MemoryError("CUDA out of memory\n  (details)")
        original(self, model_dir, **kwargs)

    gate.run("good")
    monkeypatch.setattr(_StartBiasedEngine, "__init__", second_start_fails)
    with pytest.raises(RuntimeError, match=r"^good's speed read near its floor and the fresh pair confirming it "
                       r"failed: MemoryError: CUDA out of memory \(details\)$"):  # fmt: skip
        gate.speed("good", floor=0.85)
    gate.close()
