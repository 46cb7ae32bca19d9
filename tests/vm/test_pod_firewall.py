"""The node's static pod firewall in the test VM, installed by the program's own step
(node-firewall.sh with the ruleset rendered for the dev stack's gVisor worker), seen from
pod-like network namespaces (tests/vm/podnet.py): a pod cannot open a connection to the node
(sshd, on the node address or the bridge's) nor speak IPv6 on the bridge, but reaches another
pod directly and through a DNAT'ed Service address, as kube-dns is reached. The same checks
run again after the reboot in test_vm_cloudinit.py."""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator

import pytest

from components.render.firewall import TABLE, UNIT
from tests.graph.harness import run_program, stack_config

from .conftest import NODE_NETWORK, TIMINGS, NodeFixture
from .harness import BootedVM
from .podnet import GATEWAY, KUBE_DNS_VIP, POD_B, POD_B6, PodNetwork

pytestmark = [pytest.mark.slow, pytest.mark.vm]

NODE = "worker1"  # the dev stack's gVisor worker: no exception for system pods


def install_firewall(vm: BootedVM) -> str:
    """Run the program's pod-firewall step for the node, as pulumi-command would."""
    graph = run_program(stack_config("dev"), "dev")
    step = graph.named(f"{NODE}-pod-firewall", "command:remote:Command")
    result = vm.run(str(step.inputs["create"]), stdin=str(step.inputs["stdin"]).encode(),
                    check=False, timeout=300)
    assert result.rc == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def assert_pods_are_fenced(net: PodNetwork) -> None:
    node_ip = str(NODE_NETWORK.address.ip)
    observed = {
        "pod -> node sshd": net.connect(node_ip, 22),
        "pod -> bridge address sshd": net.connect(GATEWAY, 22),
        "pod -> pod": net.connect(POD_B, 8080),
        "pod -> kube-dns Service address (DNAT to a pod)": net.connect(KUBE_DNS_VIP, 53),
        "pod -> pod over IPv6": net.connect(POD_B6, 8080),
    }
    # Neighbour discovery is IPv6 too: with it dropped the peer is unreachable (113).
    if observed["pod -> pod over IPv6"] == f"error {errno.EHOSTUNREACH}":
        observed["pod -> pod over IPv6"] = "timeout"
    assert observed == {
        "pod -> node sshd": "timeout",
        "pod -> bridge address sshd": "timeout",
        "pod -> pod": "open",
        "pod -> kube-dns Service address (DNAT to a pod)": "open",
        "pod -> pod over IPv6": "timeout",
    }, observed


@pytest.fixture
def pod_network(node_vm: NodeFixture) -> Iterator[PodNetwork]:
    net = PodNetwork(node_vm.vm)
    net.up()
    try:
        yield net
    finally:
        net.down()


def test_static_firewall_drops_pod_connections_to_the_node(
        node_vm: NodeFixture, pod_network: PodNetwork) -> None:
    vm = node_vm.vm
    start = time.monotonic()
    install_firewall(vm)
    TIMINGS["pod firewall: node-firewall.sh"] = time.monotonic() - start
    assert vm.run(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    assert vm.run(f"systemctl is-active {UNIT}").stdout.strip() == "active"
    # The node itself still reaches the pods (kubelet probes, port-forward).
    assert pod_network.connect(POD_B, 8080, from_pod="node") == "open"
    start = time.monotonic()
    assert_pods_are_fenced(pod_network)
    TIMINGS["pod firewall: probes from a pod namespace"] = time.monotonic() - start

    # Without the tables the same pod reaches sshd and IPv6 works on the bridge: the drops
    # above are the firewall's.
    vm.run(f"sudo -n nft delete table inet {TABLE}")
    vm.run(f"sudo -n nft delete table bridge {TABLE}")
    try:
        assert pod_network.connect(str(NODE_NETWORK.address.ip), 22) == "open"
        vm.run("sudo -n ip -n sk8s-pod-a neigh flush all")  # forget the failed lookup
        assert pod_network.connect(POD_B6, 8080) == "open"
    finally:
        log = install_firewall(vm)
    assert "pod firewall loaded" in log, log
    assert pod_network.connect(str(NODE_NETWORK.address.ip), 22) == "timeout"
