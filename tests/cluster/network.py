"""The cluster's private network: the lab network (tests/lab/network.py: a namespace made by
the test, a bridge carrying the lab mirror at its gateway address) with one tap per node."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab.network import LAB_NETWORK, lab_network
from tests.vm.harness import TapNic

CIDR = str(LAB_NETWORK)


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
def cluster_network(nodes: Mapping[str, str]) -> Iterator[ClusterNetwork]:
    """`nodes`: name -> the address its network-config gives it (inside CIDR)."""
    with lab_network() as net:
        taps = {}
        for i, (node, address) in enumerate(sorted(nodes.items())):
            net.add_tap(f"tap{i}")
            taps[node] = TapNic(net.prefix, f"tap{i}", address)
        yield ClusterNetwork(net.prefix, net.gateway, taps)
