"""A stand-in for a loaded engine in the gate's unit tests: what ``compress.engines.base.Engine`` offers the
gate, without a model. Tests subclass it for the seconds and texts they need and patch it in for
``open_engine`` (``compress.evaluation.run`` and ``compress.gate.session``)."""

from __future__ import annotations

from pathlib import Path

from compress.engines import BatchResult, Generation, SamplingConfig


class FakeEngine:
    """Answers ``answer <prompt>`` in ``seconds(prompts, sampling)`` (default 0.0); its folder's name is
    ``self.folder``."""

    def __init__(self, model_dir: object, **kwargs: object) -> None:
        self.model_dir, self.kwargs = str(model_dir), kwargs
        self.folder = Path(self.model_dir).name
        self.name, self.dtype, self.load_seconds = "fake", str(kwargs.get("dtype") or "x"), 0.5

    def __enter__(self) -> FakeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"engine": self.name, "dtype": self.dtype}

    def seconds(self, prompts: list[str], sampling: SamplingConfig) -> float:
        return 0.0

    def chat(self, prompts: list[str], sampling: SamplingConfig) -> BatchResult:
        seconds = self.seconds(prompts, sampling)
        gens = [
            Generation(prompt=p, text=f"answer {p}", prompt_tokens=3, output_tokens=sampling.max_tokens)
            for p in prompts
        ]
        return BatchResult(generations=gens, seconds=seconds)
