"""Fixtures that boot one shared VM per session with the node's NoCloud documents from the
product renderer (components/render/cloudinit.py): user-data, meta-data and the static
network-config, addressed as qemu's user-mode network expects."""

from __future__ import annotations

import ipaddress
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .harness import REPO_ROOT, BootedVM, VMImage, boot_vm, ensure_image
from .ssh import CloudInitStatus
from .ssh import generate_ed25519_keypair as keygen

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from components.render.cloudinit import (
    NodeCloudInit,
    StaticNetwork,
    render_meta_data,
    render_network_config,
    render_user_data,
)

# qemu user-mode networking: the guest is 10.0.2.15/24, gateway 10.0.2.2, DNS 10.0.2.3. These
# addresses exist only inside the qemu process; the host side is 127.0.0.1 port forwards.
NODE_NETWORK = StaticNetwork(
    mac="52:54:00:5a:4b:01",
    address=ipaddress.IPv4Interface("10.0.2.15/24"),
    gateway=ipaddress.IPv4Address("10.0.2.2"),
    dns=[ipaddress.IPv4Address("10.0.2.3")],
)

TIMINGS: dict[str, float] = {}
NOTES: list[str] = []


@dataclass(frozen=True)
class NodeFixture:
    vm: BootedVM
    node: NodeCloudInit
    user_data: str
    admin_private_key: Path
    cloud_init: CloudInitStatus


@pytest.fixture(scope="session")
def vm_image() -> VMImage:
    start = time.monotonic()
    image = ensure_image()
    TIMINGS["image build or cache lookup"] = time.monotonic() - start
    return image


@pytest.fixture(scope="session")
def node_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[NodeCloudInit, Path]:
    keys = tmp_path_factory.mktemp("vm-keys")
    admin_key, admin_pub = keygen(keys, "admin_ed25519", "ops@test")
    host_key, host_pub = keygen(keys, "host_ed25519", "root@sk8s-test-node")
    node = NodeCloudInit(
        hostname="sk8s-test-node",
        admin_user="ops",
        admin_ssh_public_key=admin_pub,
        host_key_ed25519_private=host_key.read_text(),
        host_key_ed25519_public=host_pub,
    )
    return node, admin_key


@pytest.fixture(scope="session")
def node_user_data(node_keys: tuple[NodeCloudInit, Path]) -> str:
    return render_user_data(node_keys[0])


@pytest.fixture(scope="session")
def node_vm(
    vm_image: VMImage,
    node_keys: tuple[NodeCloudInit, Path],
    node_user_data: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[NodeFixture]:
    node, admin_key = node_keys
    user_data = node_user_data
    workdir = tmp_path_factory.mktemp("node-vm")
    with boot_vm(
        vm_image,
        user_data,
        admin_user=node.admin_user,
        private_key=admin_key,
        host_public_key=node.host_key_ed25519_public,
        meta_data=render_meta_data(f"sk8s-test-{time.time_ns()}", node.hostname),
        network_config=render_network_config(NODE_NETWORK),
        mac=NODE_NETWORK.mac,
        workdir=workdir,
    ) as vm:
        TIMINGS["boot to SSH"] = vm.boot_seconds or 0.0
        start = time.monotonic()
        # Not checked here: test_cloud_init_finished_without_errors reports a failure, and
        # the other tests still say which of their own effects happened.
        status = vm.wait_cloud_init(check=False)
        TIMINGS["SSH to cloud-init done"] = time.monotonic() - start
        NOTES.append(f"console log: {vm.console_log}")
        yield NodeFixture(vm, node, user_data, admin_key, status)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS and not NOTES:
        return
    terminalreporter.section("test VM")
    for name, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f} s")
    for note in NOTES:
        terminalreporter.write_line(note)
