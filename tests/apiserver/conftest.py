"""One real control plane per stack, started with the stack's own API-server flags and files,
with every Kubernetes object of the stack's graph applied (server-side apply, in dependency
order), as `pulumi up` would leave them on a cluster that has no nodes yet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apiserver.controlplane import ControlPlaneError
from tests.apiserver.stack import APISERVER_BINARIES, AppliedStack, applied_stack
from tests.build_tools import run_build_script

STACKS = ("dev", "ha")
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def apiserver_bins() -> dict[str, Path]:
    bins, seconds = run_build_script("apiserver", APISERVER_BINARIES)
    TIMINGS["build or cache lookup"] = seconds
    return bins


_planes: dict[str, AppliedStack] = {}
_failed: dict[str, str] = {}  # stack -> why its control plane could not be set up


@pytest.fixture(scope="session")
def _stacks() -> Iterator[dict[str, AppliedStack]]:
    """Control planes started so far, one per stack; all stopped when the session ends."""
    yield _planes
    for applied in _planes.values():
        applied.plane.stop()
    _planes.clear()


@pytest.fixture(params=STACKS)
def applied(request: pytest.FixtureRequest, _stacks: dict[str, AppliedStack],
            apiserver_bins: dict[str, Path],
            tmp_path_factory: pytest.TempPathFactory) -> AppliedStack:
    stack = str(request.param)
    if stack in _failed:  # fail each test of the stack at once, not after another timeout
        raise ControlPlaneError(f"the {stack} control plane could not be set up: "
                                f"{_failed[stack]}")
    if stack not in _stacks:
        omit = frozenset(request.config.getoption("--omit-object") or ())
        workdir = tmp_path_factory.mktemp(f"apiserver-{stack}")
        try:
            _stacks[stack] = applied_stack(stack, apiserver_bins, workdir, omit, TIMINGS)
        except Exception as e:
            _failed[stack] = str(e).splitlines()[0]
            raise
    return _stacks[stack]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "real API server timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
