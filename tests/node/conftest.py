"""Fixtures: real containerd daemons (Debian's 1.6 and a Go-built 2.x) fed our rendered configs.

Each daemon gets a private folder (config, root, state, socket, logs), the busybox test image
and a matching sandbox ("pause") image imported through `ctr`, and a crictl bound to its
socket. Requires root; everything else (Debian packages, Go-built tools) is provided here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .nodes import TEST_IMAGE, Node, NodeFactory, start_node
from .oci import build_busybox_archive
from .tools import NodeTools, discover

TIMINGS: dict[str, float] = {}
NOTES: list[str] = []


@pytest.fixture(scope="session")
def node_tools() -> NodeTools:
    if os.geteuid() != 0:
        pytest.skip("node tests start containerd and need root")
    start = time.monotonic()
    tools = discover()
    TIMINGS["tools (apt check + build script)"] = time.monotonic() - start
    if tools.shim_testpatch_used:
        NOTES.append(
            "host lacks CAP_SYS_RESOURCE: runsc pods use the test build of "
            "containerd-shim-runsc-v1 that tolerates a refused oom_score_adj write"
        )
    for flavor in tools.flavors.values():
        NOTES.append(f"containerd {flavor.name}: {flavor.containerd} (version {flavor.version})")
    return tools


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def busybox_archive(image_dir: Path) -> Path:
    return build_busybox_archive(image_dir / "busybox.tar", TEST_IMAGE).path


@pytest.fixture(scope="session")
def node_factory(
    node_tools: NodeTools,
    tmp_path_factory: pytest.TempPathFactory,
    image_dir: Path,
    busybox_archive: Path,
) -> Iterator[NodeFactory]:
    """start(flavor_name, config_version=None, runsc_flags=None): a running Node.

    config_version None = the version the renderer picks for that containerd
    (`config_version_for`); runsc_flags are added to the renderer's runsc.toml flags next to a
    private `debug-log` folder. Nodes are stopped at session end."""
    started: list[Node] = []

    def start(
        flavor_name: str,
        config_version: int | None = None,
        runsc_flags: dict[str, str | bool] | None = None,
    ) -> Node:
        workdir = tmp_path_factory.mktemp(
            f"ctd{flavor_name.replace('.', '')}-v{config_version or 'auto'}")
        flags: dict[str, str | bool] = {"debug-log": f"{workdir}/runsc-logs/"}
        flags.update(runsc_flags or {})
        node = start_node(node_tools, flavor_name, workdir, busybox_archive, image_dir,
                          config_version=config_version, runsc_flags=flags, timings=TIMINGS)
        started.append(node)
        return node

    yield start

    for node in started:
        node.stop()


@pytest.fixture(scope="session")
def node16(node_factory: NodeFactory) -> Node:
    return node_factory("1.6")


@pytest.fixture(scope="session")
def node2(node_factory: NodeFactory) -> Node:
    return node_factory("2.x")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS and not NOTES:
        return
    terminalreporter.section("node tests (real containerd)")
    for note in NOTES:
        terminalreporter.write_line(f"note: {note}")
    for name, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f} s")
