"""The release gate's machinery, used by conftest.py and tests/gate/test_release_gate.py.

options (what to gate) -> session (each variant run once, cached) -> checks (floors, with messages that say
what regressed and by how much) and snapshot (golden JSON files) -> report (eval-compare style JSON).
Thresholds come from a checked-in TOML file (thresholds). cases holds the pytest parametrisation.
"""
