"""Let llm-compressor's AWQ run on a host without any accelerator (this project's CPU-only CI).

The upstream bug (llm-compressor since 0.13, still in 0.14.0.1): before the grid search of each mapping,
``AWQModifier._apply_smoothing`` calls ``IntermediatesCache.pin_memory`` on every cached batch, which calls
``torch.Tensor.pin_memory()``. Pinned (page-locked) memory only exists to speed up host-to-device copies,
and on a machine with no accelerator torch refuses it: ``RuntimeError: Cannot access accelerator device
when none is available``. The whole AWQ run dies there, after calibration.

With no accelerator there is no host-to-device copy to speed up, so pinning is pointless and skipping it
changes nothing in the result. :func:`cpu_only_pin_memory_fix` replaces the method with a no-op for the
duration of a ``with`` block, and only when ``torch.accelerator.is_available()`` is false; on GPU hosts it
does nothing at all. Delete this module once llm-compressor guards the call upstream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def needs_pin_memory_fix() -> bool:
    import torch

    return not torch.accelerator.is_available()


@contextlib.contextmanager
def cpu_only_pin_memory_fix() -> Iterator[bool]:
    """Within the block, ``IntermediatesCache.pin_memory`` is a no-op on accelerator-less hosts.

    Yields whether the patch is active; the original method is restored on exit.
    """
    if not needs_pin_memory_fix():
        yield False
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.__dict__["pin_memory"]

    def pin_memory(self: IntermediatesCache, batch_index: int, input_names: list[str] | None = None) -> None:
        """No-op: pinned memory needs an accelerator, and without one there are no transfers to speed up."""

    IntermediatesCache.pin_memory = pin_memory  # type: ignore[method-assign]
    try:
        yield True
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]
