"""The HA lab: three control planes with stacked etcd behind kube-vip's virtual IP, in VMs on
the lab network, every artifact from the lab mirror (tests/cluster/harness.py). The graph's
control-plane steps run in order: `kubeadm init` on `cp1`, `cp2` and `cp3` join. Then what a
day-two operator meets: a control plane whose etcd stopped is reset and joined again by its
join step; a removal is refused while a member that stays is unhealthy; and the removal steps
take the cluster from three control planes to two, then one, keeping quorum each time, while
the API answers on the virtual IP. (The stack's worker is not booted: the lab is about the
control plane.)

Markers `ha`, `slow` and `vm`, deselected by default; run it with
`tools/test -m ha tests/cluster/test_ha.py`. The tests share one cluster and run in file order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.cluster.conftest import TIMINGS
from tests.cluster.harness import Cluster, booted_cluster, timed
from tests.cluster.network import CIDR
from tests.cluster.stack import HA_CONTROL_PLANES, ha_lab_config
from tests.lab.mirror import Mirror

pytestmark = [pytest.mark.slow, pytest.mark.vm, pytest.mark.ha]

STACK = "lab"
VIP = "10.19.0.5"
NODES = {"cp1": "10.19.0.10", "cp2": "10.19.0.11", "cp3": "10.19.0.12"}
VM_SHAPE = {node: (2, 2560) for node in NODES}  # the HA lab stack's control-plane pool
ETCD_MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
ETCD_PKI = "/etc/kubernetes/pki/etcd"


@pytest.fixture(scope="module")
def cluster(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    config = ha_lab_config(mirror, CIDR, VIP)
    with booted_cluster(mirror, config, STACK, NODES, VM_SHAPE,
                        tmp_path_factory.mktemp("ha")) as booted:
        yield booted


def etcd_members(cluster: Cluster) -> dict[str, bool]:
    """Member name -> started, as cp1's etcd lists them."""
    listed = cluster.kubectl_run(
        "-n", "kube-system", "exec", "etcd-cp1", "--", "etcdctl",
        "--endpoints=https://127.0.0.1:2379", f"--cacert={ETCD_PKI}/ca.crt",
        f"--cert={ETCD_PKI}/healthcheck-client.crt", f"--key={ETCD_PKI}/healthcheck-client.key",
        "member", "list", "-w", "json").stdout
    members = json.loads(listed)["members"]
    return {m.get("name", ""): bool(m.get("clientURLs")) for m in members}


def wait_for_members(cluster: Cluster, expected: dict[str, bool],
                     timeout: float = 900.0) -> float:
    start = time.monotonic()
    last: dict[str, bool] = {}
    while time.monotonic() - start < timeout:
        try:
            last = etcd_members(cluster)
        except AssertionError:
            last = {}
        if last == expected:
            return time.monotonic() - start
        time.sleep(10)
    raise AssertionError(f"etcd members {last}, not {expected}, after {timeout:.0f} s")


def stop_etcd(cluster: Cluster, node: str) -> None:
    """The node's etcd static pod taken away: its kubelet stops the member."""
    vm = cluster.vms[node]
    vm.run(f"sudo -n mv {ETCD_MANIFEST} /root/etcd.yaml")
    for _ in range(90):
        if not vm.run("sudo -n crictl ps --name '^etcd$' --state running -q").stdout.strip():
            return
        time.sleep(5)
    raise AssertionError(f"etcd still runs on {node}")


def vip_holder(cluster: Cluster) -> str:
    """The control plane kube-vip gave the virtual IP to (its leader)."""
    holders = [node for node, vm in cluster.vms.items()
               if f" {VIP}/" in vm.run("ip -o -4 addr show", check=False).stdout]
    assert len(holders) == 1, holders
    return holders[0]


def not_holding_the_vip(cluster: Cluster, *candidates: str) -> str:
    """One of `candidates` that does not hold the virtual IP: breaking it leaves the API on the
    virtual IP answering (a broken leader would hold it until its lease ran out)."""
    holder = vip_holder(cluster)
    return next(c for c in candidates if c != holder)


def test_three_control_planes_come_up_in_graph_order(cluster: Cluster) -> None:
    on_control_planes = set(NODES.values())
    for step in cluster.plan.steps:
        if step.host in on_control_planes:
            cluster.run_step(step)
    TIMINGS["etcd: three members started"] = wait_for_members(
        cluster, dict.fromkeys(HA_CONTROL_PLANES, True))
    nodes = json.loads(cluster.kubectl_run("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == list(HA_CONTROL_PLANES)
    # kubectl reaches the cluster through the stack's endpoint: the virtual IP.
    assert f"https://{VIP}:6443" in cluster.kubeconfig.read_text()


def test_a_control_plane_whose_etcd_stopped_is_joined_again(cluster: Cluster) -> None:
    """Its kubelet runs and kubelet.conf exists, so a join that looked only at those would call
    it done; the join step finds its member unhealthy, resets the node and joins it again."""
    node = not_holding_the_vip(cluster, "cp3", "cp2")
    stop_etcd(cluster, node)
    (join,) = [s for s in cluster.plan.steps if s.name == f"{node}-kubeadm-join"]
    with timed(f"join of {node} again, its etcd stopped"):
        result = cluster.run(join)
    log = result.stdout + result.stderr
    assert result.rc == 0, log[-6000:]
    assert "resetting and joining once more" in log, log[-6000:]
    assert "control plane healthy" in log
    wait_for_members(cluster, dict.fromkeys(HA_CONTROL_PLANES, True))


def test_a_removal_is_refused_while_a_member_that_stays_is_unhealthy(cluster: Cluster) -> None:
    broken = not_holding_the_vip(cluster, "cp2", "cp3")
    leaving = "cp3" if broken == "cp2" else "cp2"
    stop_etcd(cluster, broken)
    result = cluster.run(cluster.plan.removals[f"cp1-remove-{leaving}"])
    log = result.stdout + result.stderr
    assert result.rc != 0 and "would lose quorum" in log, log[-4000:]
    assert set(etcd_members(cluster)) == set(HA_CONTROL_PLANES)
    cluster.vms[broken].run(f"sudo -n mv /root/etcd.yaml {ETCD_MANIFEST}")
    wait_for_members(cluster, dict.fromkeys(HA_CONTROL_PLANES, True))
    # The refused removal drained the node first; it stays cordoned until it leaves.


@pytest.mark.parametrize(("leaving", "staying"), [("cp3", ("cp1", "cp2")), ("cp2", ("cp1",))])
def test_control_planes_leave_one_at_a_time(cluster: Cluster, leaving: str,
                                            staying: tuple[str, ...]) -> None:
    """3 → 2 → 1, one per `up`: the removal step drains the node, removes its etcd member and
    deletes its Node object; then its VM goes (here: powered off, as `destroy` would)."""
    removal = cluster.plan.removals[f"cp1-remove-{leaving}"]
    with timed(f"removal of {leaving}"):
        result = cluster.run(removal)
    assert result.rc == 0, (result.stdout + result.stderr)[-4000:]
    assert etcd_members(cluster) == dict.fromkeys(staying, True)
    cluster.vms[leaving].run("sudo -n systemctl poweroff", check=False)
    TIMINGS[f"API on the virtual IP after {leaving} left"] = cluster.wait_for(
        "nodes", "{.items[*].metadata.name}", " ".join(staying), timeout=900)
    again = cluster.run(removal)  # the next `up` would find it gone
    assert again.rc == 0, (again.stdout + again.stderr)[-4000:]
