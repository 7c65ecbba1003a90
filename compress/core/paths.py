"""Where local models and built variants live.

Everything is under one folder, ``$EXAONE_COMPRESSION_HOME`` (default ``~/.cache/exaone-compression``):
``sources/<name>`` holds the local base models made from PyPI packages, ``models/<matrix>/<variant>`` the
built variant folders, one matrix per recipe.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("EXAONE_COMPRESSION_HOME", Path.home() / ".cache" / "exaone-compression"))


def sources_dir() -> Path:
    return home() / "sources"


def models_dir() -> Path:
    return home() / "models"


def matrix_dir(matrix: str) -> Path:
    return models_dir() / matrix
