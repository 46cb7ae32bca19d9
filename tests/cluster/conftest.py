"""The cluster layer's lab mirror, and its stage durations, printed after the run."""

from __future__ import annotations

import time

import pytest

from tests.lab.mirror import Mirror, ensure_mirror

TIMINGS: dict[str, float] = {}


def record(name: str, seconds: float) -> None:
    """A stage's duration. A stage run again (the upgrade runs `kubeadm init`'s step again)
    keeps its earlier figures: the later run is recorded as "(run 2)", and so on."""
    key, run = name, 1
    while key in TIMINGS:
        run += 1
        key = f"{name} (run {run})"
    TIMINGS[key] = seconds


@pytest.fixture(scope="module")
def mirror() -> Mirror:
    start = time.monotonic()
    built = ensure_mirror()
    record("lab mirror (cache lookup or build)", time.monotonic() - start)
    return built


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("cluster durations")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.0f} s")
