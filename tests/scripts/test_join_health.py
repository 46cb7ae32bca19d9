"""A control-plane join counts as done only when the node is a healthy member: its etcd member
listed as started and healthy, its API server's static pod Ready. A join left half-way is reset
and joined once more; one that stays unhealthy fails, naming what is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.render.kubeadm import JOIN_TOKEN_PLACEHOLDER, NodeRegistration, render_join_config
from components.render.scripts import SCRIPTS_DIR, b64, render_invocation
from tests.scripts.fakes import FakeNode

# The CA and service-account parameters a control-plane join installs (PKI_FILES in lib.sh).
PKI_PARAMS = re.findall(r'"([A-Z_]+_B64):', (SCRIPTS_DIR / "lib.sh").read_text())

FIRST = "8e9e05c52164694d, started, control-plane-1, https://10.18.0.10:2380, " \
        "https://10.18.0.10:2379, false\n"


@pytest.fixture
def node(tmp_path: Path) -> FakeNode:
    fake = FakeNode(tmp_path)
    (tmp_path / "issuer").write_text(render_invocation("issue-join-token.sh",
                                                       {"TOKEN_TTL": "30m"}))
    (fake.state / "etcd-members").write_text(FIRST)
    return fake


def join_env(node: FakeNode, control_plane: bool = True) -> dict[str, str]:
    name, ip = ("control-plane-2", "10.18.0.11") if control_plane else ("gvisor-1", "10.18.0.13")
    config = render_join_config(NodeRegistration(name, {}, (), control_plane), "10.18.0.5:6443",
                                JOIN_TOKEN_PLACEHOLDER, "sha256:" + "a" * 64, ip)
    env = {"FAKE_ISSUER": str(node.state.parent / "issuer"), "FAKE_NODE_IP": ip,
           "NODE_NAME": name, "CONTROL_PLANE": "1" if control_plane else "0",
           "KUBEADM_JOIN_CONFIG_B64": b64(config), "TOKEN_PLACEHOLDER": JOIN_TOKEN_PLACEHOLDER,
           "TOKEN_ISSUER_HOST": "10.18.0.10", "TOKEN_ISSUER_USER": "k8sadmin",
           "TOKEN_ISSUER_KEY_B64": b64("key\n"),
           "TOKEN_ISSUER_KNOWN_HOSTS_B64": b64("10.18.0.10 ssh-ed25519 AAAA\n"),
           "HEALTH_CHECKS": "2", "HEALTH_CHECK_SECONDS": "0", "JOIN_RETRY_SECONDS": "0",
           "AUDIT_LOG_DIR": str(node.state / "audit"),
           "ENCRYPTION_CONFIG_B64": b64("kind: EncryptionConfiguration\n"),
           "AUDIT_POLICY_B64": b64("kind: Policy\n")}
    if control_plane:
        env.update({param: b64(f"pem of {param}\n") for param in PKI_PARAMS})
    return env


def half_joined(node: FakeNode) -> None:
    """What a control-plane join that stopped half-way leaves: kubelet.conf and a running
    kubelet, but no etcd member and no API server."""
    (node.k8s_dir / "kubelet.conf").write_text("kubelet\n")
    (node.state / "kubelet-active").touch()


def test_a_half_finished_control_plane_join_is_reset_and_joined_again(node: FakeNode) -> None:
    half_joined(node)
    result = node.run("kubeadm-join.sh", join_env(node))
    assert result.returncode == 0, result.stderr
    assert "not a healthy control plane (etcd is not running); resetting and joining once " \
           "more" in result.stderr
    kubeadm = [c.split()[1] for c in node.calls("kubeadm")]
    assert kubeadm == ["reset", "token", "join"]  # reset, a fresh token, the join
    assert ", started, control-plane-2, " in node.read("etcd-members")
    assert "control plane healthy" in result.stderr


def test_a_failed_kubeadm_join_is_reset_and_tried_again(node: FakeNode) -> None:
    """kubeadm's own API requests time out after 10 s (its preflight read of kubeadm-config,
    seen failing under a busy two-member etcd): the join is reset and tried again with a fresh
    token and the CAs the reset removed."""
    (node.state / "fail-join").write_text("1\n")
    result = node.run("kubeadm-join.sh", join_env(node))
    assert result.returncode == 0, result.stderr
    assert "kubeadm join failed (attempt 1 of 3); resetting and trying again" in result.stderr
    kubeadm = [c.split()[1] for c in node.calls("kubeadm")]
    assert kubeadm == ["token", "join", "reset", "token", "join"]
    assert (node.k8s_dir / "pki/ca.key").read_text() == "pem of CA_KEY_B64\n"
    assert "control plane healthy" in result.stderr


def test_a_join_that_keeps_failing_stops_after_its_attempts(node: FakeNode) -> None:
    (node.state / "fail-join").touch()
    result = node.run("kubeadm-join.sh", join_env(node, control_plane=False))
    assert result.returncode != 0
    assert "kubeadm join failed 3 times (its errors are above); on gvisor-1 see:" \
        in result.stderr
    kubeadm = [c.split()[1] for c in node.calls("kubeadm")]
    assert kubeadm == ["token", "join", "reset"] * 2 + ["token", "join"]


def test_a_healthy_control_plane_is_left_alone(node: FakeNode) -> None:
    assert node.run("kubeadm-join.sh", join_env(node)).returncode == 0
    calls = len(node.calls("kubeadm"))
    again = node.run("kubeadm-join.sh", join_env(node))
    assert again.returncode == 0, again.stderr
    assert "node already joined" in again.stderr and "control plane healthy" in again.stderr
    assert len(node.calls("kubeadm")) == calls  # no reset, no token, no join


@pytest.mark.parametrize(("breakage", "problem"), [
    ("join-leaves-etcd-down", "etcd is not running"),
    ("etcd-unhealthy", "etcd member control-plane-2 is unhealthy"),
])
def test_a_control_plane_that_stays_unhealthy_fails_naming_why(node: FakeNode, breakage: str,
                                                               problem: str) -> None:
    (node.state / breakage).touch()
    result = node.run("kubeadm-join.sh", join_env(node))
    assert result.returncode != 0
    assert f"control-plane-2 did not become a healthy control plane: {problem}." \
        in result.stderr
    assert "journalctl -u kubelet" in result.stderr
    # One more join was tried, never more.
    assert [c.split()[1] for c in node.calls("kubeadm")].count("join") == 2


def test_an_api_server_that_is_not_ready_is_named(node: FakeNode) -> None:
    (node.state / "apiserver-never-ready").touch()
    result = node.run("kubeadm-join.sh", join_env(node))
    assert result.returncode != 0
    assert "did not become a healthy control plane: the static pod " \
           "kube-apiserver-control-plane-2 is not Ready." in result.stderr


def test_a_member_listed_but_not_started_is_not_taken_as_joined(node: FakeNode) -> None:
    half_joined(node)
    (node.state / "etcd-running").touch()  # the first member answers; ours never started
    (node.state / "etcd-members").write_text(
        FIRST + "a1b2c3d4e5f60718, unstarted, , https://10.18.0.11:2380, , false\n")
    result = node.run("kubeadm-join.sh", join_env(node))
    assert result.returncode == 0, result.stderr
    assert "(no started etcd member control-plane-2)" in result.stderr


def test_worker_joins_have_no_control_plane_checks(node: FakeNode) -> None:
    result = node.run("kubeadm-join.sh", join_env(node, control_plane=False))
    assert result.returncode == 0, result.stderr
    assert node.calls("crictl") == [] and "control plane healthy" not in result.stderr


def test_a_node_joining_again_starts_without_its_old_pod_network(node: FakeNode) -> None:
    """A node that was in the cluster before (reset, its Node deleted) keeps Flannel's device,
    the CNI bridge and Flannel's subnet record with its old pod subnet; its next join may get
    another subnet, and the old bridge would fail every pod. They go before the join; other
    links stay."""
    (node.state / "links").write_text("lo\neth0\ncni0\nflannel.1\n")
    subnet = node.state / "subnet.env"
    subnet.write_text("FLANNEL_SUBNET=10.244.1.1/24\n")
    result = node.run("kubeadm-join.sh", join_env(node, control_plane=False))
    assert result.returncode == 0, result.stderr
    assert node.read("links") == "lo\neth0\n"
    assert not subnet.exists()  # Flannel writes the new subnet; pods wait for it
    calls = node.calls()
    first_join = next(i for i, c in enumerate(calls) if c.startswith("kubeadm join"))
    assert {"ip link delete cni0", "ip link delete flannel.1"} <= set(calls[:first_join])
    # Joined: a further run touches no interface (pods use them).
    (node.state / "links").write_text("lo\neth0\ncni0\nflannel.1\n")
    subnet.write_text("FLANNEL_SUBNET=10.244.2.1/24\n")
    again = node.run("kubeadm-join.sh", join_env(node, control_plane=False))
    assert again.returncode == 0 and "node already joined" in again.stderr
    assert node.read("links") == "lo\neth0\ncni0\nflannel.1\n" and subnet.exists()
