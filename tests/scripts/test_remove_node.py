"""remove-node.sh, run on the first control plane when a node leaves: drain, then (control
planes) its etcd member, then its Node object; it refuses, keeping the VM, whatever would leave
the cluster worse off."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts.fakes import FakeNode

MEMBERS = """\
8e9e05c52164694d, started, control-plane-1, https://10.18.0.10:2380, https://10.18.0.10:2379, false
91bc3c398fb3c146, started, control-plane-2, https://10.18.0.11:2380, https://10.18.0.11:2379, false
fd422379fda50e48, started, control-plane-3, https://10.18.0.12:2380, https://10.18.0.12:2379, false
"""


def health(*unhealthy: str) -> str:
    return "".join(
        f"https://10.18.0.{10 + i}:2379 is "
        + ("unhealthy: failed to commit proposal: context deadline exceeded\n"
           if f"control-plane-{i + 1}" in unhealthy else "healthy: committed proposal\n")
        for i in range(3))


@pytest.fixture
def cluster(tmp_path: Path) -> FakeNode:
    node = FakeNode(tmp_path)
    for name in ("control-plane-1", "control-plane-2", "control-plane-3", "gvisor-1"):
        (node.state / f"node-{name}").write_text("True")
    (node.state / "etcd-members").write_text(MEMBERS)
    (node.state / "etcd-health").write_text(health())
    return node


def remove(cluster: FakeNode, name: str, ip: str, control_plane: bool,
           **extra: str) -> tuple[int, str]:
    result = cluster.run("remove-node.sh", {
        "NODE_NAME": name, "NODE_IP": ip, "CONTROL_PLANE": "1" if control_plane else "0",
        "ETCD_POD": "etcd-control-plane-1", "DRAIN_TIMEOUT": "10m", "API_ATTEMPTS": "2",
        "API_RETRY_SECONDS": "0", **extra})
    return result.returncode, result.stderr


def actions(cluster: FakeNode) -> list[str]:
    """What changed the cluster, in order."""
    keep = ("kubectl cordon", "kubectl drain", "kubectl delete", "member remove")
    return [next(k for k in keep if k in c) for c in cluster.calls("kubectl")
            if any(k in c for k in keep)]


def test_a_worker_is_drained_then_deleted(cluster: FakeNode) -> None:
    rc, log = remove(cluster, "gvisor-1", "10.18.0.13", control_plane=False)
    assert rc == 0, log
    assert actions(cluster) == ["kubectl cordon", "kubectl drain", "kubectl delete"]
    drain = next(c for c in cluster.calls("kubectl") if "drain" in c)
    assert "--ignore-daemonsets" in drain and "--timeout=10m" in drain
    assert not (cluster.state / "node-gvisor-1").exists()
    assert not any("exec" in c for c in cluster.calls("kubectl"))  # etcd untouched
    # A re-run (a half-finished removal, or a node that never registered) is fine.
    rc, log = remove(cluster, "gvisor-1", "10.18.0.13", control_plane=False)
    assert rc == 0 and "not registered: nothing to drain" in log


def test_a_control_plane_leaves_etcd_before_its_node_object_goes(cluster: FakeNode) -> None:
    rc, log = remove(cluster, "control-plane-3", "10.18.0.12", control_plane=True)
    assert rc == 0, log
    assert actions(cluster) == ["kubectl cordon", "kubectl drain", "member remove",
                                "kubectl delete"]
    assert "fd422379fda50e48" in next(c for c in cluster.calls("kubectl") if "remove" in c)
    assert "control-plane-3" not in cluster.read("etcd-members")
    assert "removed control-plane-3's etcd member fd422379fda50e48" in log


def test_a_member_is_not_removed_when_one_that_stays_is_unhealthy(cluster: FakeNode) -> None:
    (cluster.state / "etcd-health").write_text(health("control-plane-2"))
    rc, log = remove(cluster, "control-plane-3", "10.18.0.12", control_plane=True)
    assert rc != 0
    assert "etcd members that stay are unhealthy (https://10.18.0.11:2379)" in log
    assert "would lose quorum" in log and "its VM stays" in log
    assert "member remove" not in actions(cluster)
    assert (cluster.state / "node-control-plane-3").exists()


def test_the_leaving_member_itself_may_be_down(cluster: FakeNode) -> None:
    (cluster.state / "etcd-health").write_text(health("control-plane-3"))
    (cluster.state / "node-control-plane-3").write_text("Unknown")
    rc, log = remove(cluster, "control-plane-3", "10.18.0.12", control_plane=True)
    assert rc == 0, log
    assert "is not Ready: nothing on it can be evicted" in log
    assert actions(cluster) == ["kubectl cordon", "member remove", "kubectl delete"]


def test_a_member_that_never_started_is_found_by_its_address(cluster: FakeNode) -> None:
    (cluster.state / "etcd-members").write_text(
        MEMBERS.replace("started, control-plane-3, https://10.18.0.12:2380, "
                        "https://10.18.0.12:2379", "unstarted, , https://10.18.0.12:2380, "))
    (cluster.state / "node-control-plane-3").unlink()  # its join never got that far
    rc, log = remove(cluster, "control-plane-3", "10.18.0.12", control_plane=True)
    assert rc == 0, log
    assert "fd422379fda50e48" not in cluster.read("etcd-members")


def test_a_drain_that_cannot_finish_keeps_the_node(cluster: FakeNode) -> None:
    (cluster.state / "drain-fails").touch()
    rc, log = remove(cluster, "gvisor-1", "10.18.0.13", control_plane=False)
    assert rc != 0
    assert "draining gvisor-1 did not finish within 10m" in log and "kubectl get pdb" in log
    assert "kubectl delete" not in actions(cluster)
    assert (cluster.state / "node-gvisor-1").exists()


def test_nothing_happens_without_the_api_server(cluster: FakeNode) -> None:
    (cluster.state / "api-down").touch()
    rc, log = remove(cluster, "gvisor-1", "10.18.0.13", control_plane=False)
    assert rc != 0 and "the API server does not answer: gvisor-1 was not drained" in log
    assert actions(cluster) == []
