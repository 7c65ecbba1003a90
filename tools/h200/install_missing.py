"""Install, from a folder of wheels, only the packages the H200 image cannot import (never shadow its own)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

MODULE = {  # wheel name prefix -> module it provides
    "pytest-": "pytest", "pluggy": "pluggy", "iniconfig": "iniconfig", "pytest_xdist": "xdist",
    "execnet": "execnet", "syrupy": "syrupy", "rapidfuzz": "rapidfuzz", "hypothesis": "hypothesis",
    "sortedcontainers": "sortedcontainers", "attrs": "attr", "matplotlib": "matplotlib", "contourpy": "contourpy",
    "cycler": "cycler", "fonttools": "fontTools", "kiwisolver": "kiwisolver", "pyparsing": "pyparsing",
    "python_dateutil": "dateutil", "six": "six", "pillow": "PIL", "gguf": "gguf", "pyyaml": "yaml",
}

wheels, target = Path(sys.argv[1]), sys.argv[2]
sys.path.insert(0, target)
todo = []
for wheel in sorted(wheels.glob("*.whl")):
    module = next((m for prefix, m in MODULE.items() if wheel.name.lower().startswith(prefix)), None)
    if module is None or importlib.util.find_spec(module) is None:
        todo.append(str(wheel))
print("installing:", ", ".join(Path(w).name.split("-")[0] for w in todo) or "nothing")
if todo:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", target, *todo], check=True)
