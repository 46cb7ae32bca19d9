"""kubeadm-init.sh on a new machine in an HA cluster's first place: the other control planes
still answer at the VIP, and init would start a second, empty cluster beside them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.render.scripts import SCRIPTS_DIR, b64
from tests.scripts.fakes import FakeNode

PKI_PARAMS = re.findall(r'"([A-Z_]+_B64):', (SCRIPTS_DIR / "lib.sh").read_text())


@pytest.fixture
def node(tmp_path: Path) -> FakeNode:
    return FakeNode(tmp_path)


def init(node: FakeNode, vip_answers: bool) -> tuple[int, str]:
    node.add("curl", f"#!/bin/sh\necho \"curl $*\" >>\"$FAKE_STATE/calls\"\n"
                     f"exit {0 if vip_answers else 7}\n")
    result = node.run("kubeadm-init.sh", {
        "KUBEADM_CONFIG_B64": b64("kind: InitConfiguration\n"),
        "CLUSTER_ENDPOINT": "10.18.0.5:6443", "AUDIT_LOG_DIR": str(node.state / "audit"),
        "ENCRYPTION_CONFIG_B64": b64("kind: EncryptionConfiguration\n"),
        "AUDIT_POLICY_B64": b64("kind: Policy\n"),
        **{param: b64(f"pem of {param}\n") for param in PKI_PARAMS}})
    return result.returncode, result.stderr


def test_a_replaced_first_control_plane_does_not_start_a_second_cluster(
        node: FakeNode) -> None:
    rc, log = init(node, vip_answers=True)
    assert rc != 0
    assert "the cluster still answers at 10.18.0.5:6443 from its other control planes" in log
    assert node.calls("kubeadm") == []
    assert "curl -fsk --max-time 10 https://10.18.0.5:6443/livez" in node.calls("curl")


def test_the_first_init_of_an_ha_cluster_runs(node: FakeNode) -> None:
    rc, log = init(node, vip_answers=False)  # nothing holds the VIP yet
    assert rc == 0, log
    assert any(c.startswith("kubeadm init --config") for c in node.calls("kubeadm"))
    assert "control plane ready" in log


def test_an_init_after_a_reset_starts_without_the_old_pod_network(node: FakeNode) -> None:
    (node.state / "links").write_text("eth0\ncni0\nflannel.1\n")
    (node.state / "subnet.env").write_text("FLANNEL_SUBNET=10.244.0.1/24\n")
    rc, log = init(node, vip_answers=False)
    assert rc == 0, log
    assert node.read("links") == "eth0\n" and node.read("subnet.env") == ""
    calls = node.calls()
    assert calls.index("ip link delete cni0") < next(
        i for i, c in enumerate(calls) if c.startswith("kubeadm init"))
