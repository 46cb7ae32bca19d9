"""A private network for the cluster's VMs: a network namespace with a bridge (the mirrors
listen on its address) and one tap device per VM. Nothing in it reaches any other network."""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.vm.harness import TapNic

BRIDGE = "br0"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ClusterNetwork:
    prefix: tuple[str, ...]  # runs a command inside the namespace
    gateway: str  # the bridge's address
    taps: dict[str, TapNic]  # node -> its NIC

    def run(self, argv: Sequence[str], *, timeout: float = 300.0, check: bool = True,
            stdin: str | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.prefix, *argv], capture_output=True, text=True,
                              timeout=timeout, input=stdin, check=False, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc


@contextlib.contextmanager
def cluster_network(cidr: str, nodes: dict[str, str]) -> Iterator[ClusterNetwork]:
    """`nodes`: name -> the address its network-config gives it (inside `cidr`)."""
    network = ipaddress.IPv4Network(cidr)
    gateway = str(next(network.hosts()))
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    prefix = ("nsenter", "-t", str(holder.pid), "-n")

    def ip(*args: str) -> None:
        subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=30)

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while subprocess.run([*prefix, "ip", "link", "set", "lo", "up"],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError("the cluster's network namespace did not come up")
            time.sleep(0.05)
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{gateway}/{network.prefixlen}", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        taps = {}
        for i, (node, address) in enumerate(sorted(nodes.items())):
            name = f"tap{i}"
            ip("tuntap", "add", "dev", name, "mode", "tap")
            ip("link", "set", name, "master", BRIDGE)
            ip("link", "set", name, "up")
            taps[node] = TapNic(prefix, name, address)
        yield ClusterNetwork(prefix, gateway, taps)
    finally:
        holder.kill()
        holder.wait(timeout=10)
