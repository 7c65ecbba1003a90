"""Repository-wide pytest set-up: the release gate's plugin (options, markers, fixtures).

Its code is compress/gate/plugin.py; never import from this file.
"""

pytest_plugins = ["compress.gate.plugin"]
