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

from .configs import config_version_for, render_into
from .containerd import (
    config_dump,
    cri_sandbox_image,
    cri_snapshotter,
    parse_dump,
    start_containerd,
)
from .cri import Crictl
from .nodes import TEST_IMAGE, Node, NodeFactory
from .oci import build_busybox_archive, pause_entrypoint
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


def _pause_archive(image_dir: Path, ref: str) -> Path:
    dest = image_dir / ("pause-" + ref.replace("/", "_").replace(":", "_") + ".tar")
    if not dest.exists():
        build_busybox_archive(dest, ref, entrypoint=pause_entrypoint())
    return dest


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
        flavor = node_tools.flavors[flavor_name]
        version = config_version or config_version_for(flavor.version)
        workdir = tmp_path_factory.mktemp(f"ctd{flavor_name.replace('.', '')}-v{version}")
        flags: dict[str, str | bool] = {"debug-log": f"{workdir}/runsc-logs/"}
        flags.update(runsc_flags or {})
        rendered = render_into(workdir / "etc", version, runsc_flags=flags)
        dump = config_dump(flavor, rendered.config_path)
        parsed = parse_dump(dump)
        t0 = time.monotonic()
        daemon = start_containerd(flavor, rendered.config_path, workdir)
        cri = Crictl(node_tools.crictl, daemon.endpoint, workdir / "cri")
        node = Node(flavor, rendered, daemon, cri, TEST_IMAGE, cri_sandbox_image(parsed), dump)
        started.append(node)
        cri.wait_runtime_ready()
        TIMINGS[f"containerd {flavor_name} start to CRI ready"] = time.monotonic() - t0
        snapshotter = cri_snapshotter(parsed)
        daemon.import_image(busybox_archive, snapshotter)
        daemon.import_image(_pause_archive(image_dir, node.sandbox_image), snapshotter)
        cri.wait_image(TEST_IMAGE)
        cri.wait_image(node.sandbox_image)
        return node

    yield start

    for node in started:
        node.cri.remove_all_pods()
        node.daemon.stop()


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
