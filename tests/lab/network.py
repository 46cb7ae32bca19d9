"""The lab network: a network namespace made for the test, a bridge in it carrying the lab
mirror at the gateway address, and VMs of the test image (tests/vm/harness.py) plugged into it
by tap devices, with static addresses from the product's own NoCloud documents.

Nothing leaves the namespace: the VMs have no other NIC, the bridge has no uplink, and the
test's SSH runs inside it (``nsenter -t PID -n ssh ...``). Typical use::

    with lab_network() as net, serve_mirror(mirror, net.prefix, net.gateway):
        with boot_lab_vms(image, net, ["node1", "node2"], workdir) as nodes:
            nodes[0].vm.run(f"curl -fsS http://{net.gateway}:8080/...")
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from components.render.cloudinit import (
    NodeCloudInit,
    StaticNetwork,
    render_meta_data,
    render_network_config,
    render_user_data,
)
from tests.vm.harness import BootedVM, TapNic, VMImage, boot_vm
from tests.vm.ssh import generate_ed25519_keypair

from .mirror import network_namespace

LAB_NETWORK = ipaddress.IPv4Network("10.19.0.0/24")
BRIDGE = "lab0"
FIRST_NODE_HOST = 11  # node i is .11, .12, ...
ADMIN_USER = "ops"


@dataclass(frozen=True)
class LabNetwork:
    prefix: tuple[str, ...]  # runs a command inside the namespace
    gateway: str  # the bridge's address: where the mirror is served

    def address(self, index: int) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(
            f"{LAB_NETWORK.network_address + FIRST_NODE_HOST + index}/{LAB_NETWORK.prefixlen}")

    def add_tap(self, name: str) -> None:
        """A tap device on the bridge, for qemu to open (``ifname=``, no scripts)."""
        for cmd in (["ip", "tuntap", "add", name, "mode", "tap"],
                    ["ip", "link", "set", name, "master", BRIDGE],
                    ["ip", "link", "set", name, "up"]):
            subprocess.run([*self.prefix, *cmd], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def lab_network() -> Iterator[LabNetwork]:
    gateway = LAB_NETWORK.network_address + 1
    with network_namespace(f"{gateway}/{LAB_NETWORK.prefixlen}", BRIDGE) as prefix:
        yield LabNetwork(tuple(prefix), str(gateway))


@dataclass(frozen=True)
class LabNode:
    name: str
    address: str
    vm: BootedVM
    boot_seconds: float


def _cloud_init(name: str, keys: Path) -> tuple[NodeCloudInit, Path]:
    admin_key, admin_pub = generate_ed25519_keypair(keys, f"{name}-admin", f"{ADMIN_USER}@test")
    host_key, host_pub = generate_ed25519_keypair(keys, f"{name}-host", f"root@{name}")
    return NodeCloudInit(hostname=name, admin_user=ADMIN_USER, admin_ssh_public_key=admin_pub,
                         host_key_ed25519_private=host_key.read_text(),
                         host_key_ed25519_public=host_pub), admin_key


@contextlib.contextmanager
def boot_lab_vms(image: VMImage, net: LabNetwork, names: Sequence[str], workdir: Path,
                 memory_mb: int = 1024, cpus: int = 1) -> Iterator[list[LabNode]]:
    """Boot one VM per name on the lab bridge, all at once; yield when each answers SSH.
    Every VM is stopped when the block ends (also those that booted when another failed)."""
    contexts = []
    for i, name in enumerate(names):
        node, admin_key = _cloud_init(name, workdir / "keys")
        address = net.address(i)
        mac = f"52:54:00:19:00:{i + 1:02x}"
        tap = f"tap{i}"
        net.add_tap(tap)
        static = StaticNetwork(mac=mac, address=address, gateway=ipaddress.IPv4Address(
            net.gateway), dns=[ipaddress.IPv4Address(net.gateway)])
        contexts.append((name, str(address.ip), boot_vm(
            image, render_user_data(node), admin_user=ADMIN_USER, private_key=admin_key,
            host_public_key=node.host_key_ed25519_public,
            meta_data=render_meta_data(f"lab-{name}-{time.time_ns()}", name),
            network_config=render_network_config(static), mac=mac, workdir=workdir / name,
            memory_mb=memory_mb, cpus=cpus, guest_agent_channel=False,
            tap=TapNic(net.prefix, tap, str(address.ip)))))
    with contextlib.ExitStack() as stack:
        # Each boot waits for SSH inside __enter__: entered in parallel, exits registered
        # for every one that booted before any failure is raised.
        with ThreadPoolExecutor(len(contexts)) as pool:
            futures = [pool.submit(cm.__enter__) for _, _, cm in contexts]
        nodes: list[LabNode] = []
        errors: list[BaseException] = []
        for (name, ip, cm), future in zip(contexts, futures, strict=True):
            error = future.exception()
            if error is not None:
                errors.append(error)
                continue
            stack.push(cm.__exit__)
            vm = future.result()
            nodes.append(LabNode(name, ip, vm, vm.boot_seconds or 0.0))
        if errors:
            raise errors[0]
        yield nodes
