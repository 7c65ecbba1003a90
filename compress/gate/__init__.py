"""The release gate's machinery: its pytest plugin (plugin, registered by the root conftest.py) and what
tests/gate/test_release_gate.py calls.

options (one table of what to gate) -> session (each variant loaded once: answers, fidelity and tasks while it is
loaded, speed rounds) -> checks (floors, with messages that say what regressed and by how much) and snapshot
(golden JSON files) -> report (eval-compare style JSON, the runs file). Thresholds come from a checked-in TOML
file (thresholds); cases holds the pytest parametrisation.
"""
