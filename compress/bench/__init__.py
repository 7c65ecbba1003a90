"""Benchmark tooling beside the gate: dummy-weight speed benchmark, gate-vs-bare-script overhead. May import
the gate (it measures it); nothing imports bench but the CLI."""
