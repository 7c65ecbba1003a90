"""Output-comparison metrics: pure functions over texts, no engines, no I/O.

Similarity is rapidfuzz's normalised Indel similarity (``fuzz.ratio / 100``): 1.0 for identical texts, 0.0 for
texts with nothing in common, symmetric. It is what the old eval script reported as ``avg_similarity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

from rapidfuzz import fuzz


def similarity(a: str, b: str) -> float:
    """Character-level similarity in [0, 1]; two empty texts count as identical."""
    if not a and not b:
        return 1.0
    return fuzz.ratio(a, b) / 100.0


def is_non_empty(text: str) -> bool:
    """An answer counts only if it has a visible character: whitespace-only is the silent failure we catch."""
    return bool(text.strip())


@dataclass(frozen=True)
class OutputComparison:
    """A candidate's texts against the baseline's, prompt by prompt (same order)."""

    similarities: list[float]
    exact: list[bool]
    non_empty: list[bool]

    @property
    def avg_similarity(self) -> float:
        return fmean(self.similarities) if self.similarities else 0.0

    @property
    def exact_match(self) -> float:
        """Fraction of prompts whose text equals the baseline's exactly (0-1)."""
        return sum(self.exact) / len(self.exact) if self.exact else 0.0

    @property
    def non_empty_count(self) -> int:
        return sum(self.non_empty)

    @property
    def non_empty_rate(self) -> float:
        return self.non_empty_count / len(self.non_empty) if self.non_empty else 0.0


def compare_outputs(baseline: list[str], candidate: list[str]) -> OutputComparison:
    if len(baseline) != len(candidate):
        raise ValueError(f"baseline has {len(baseline)} outputs, candidate {len(candidate)}: prompts differ")
    return OutputComparison(
        similarities=[similarity(b, c) for b, c in zip(baseline, candidate, strict=True)],
        exact=[b == c for b, c in zip(baseline, candidate, strict=True)],
        non_empty=[is_non_empty(c) for c in candidate],
    )
