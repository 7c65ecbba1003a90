"""The environment for a gate run started from Python (calibrate, the separation study, the overhead bench).

pytest and pytest-xdist mark their own processes through environment variables; a gate started from inside an
xdist worker (a test of these commands under ``pytest -n``) would inherit them and behave as a worker of a run
that does not exist (no terminal summary, a shared temp folder that is not its own). A user's own settings
(``PYTEST_ADDOPTS`` among them) stay.
"""

from __future__ import annotations

import os

PER_PROCESS = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID", "PYTEST_CURRENT_TEST")


def child_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without the variables pytest sets for the current process, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in PER_PROCESS}
    env.update(extra)
    return env
