"""Benchmarks: scripts that measure and print tables (and a PNG chart); never run as tests.

Each has one command (see the README's "Performance" section); tests/benchmarks runs each
with tiny counts so they keep working."""
