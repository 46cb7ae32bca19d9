"""What one `pulumi up` may change about a running cluster.

The config alone cannot tell a safe change from an unsafe one: three control planes going to
one is a new cluster's choice but a running cluster's quorum loss. Every successful `up` records
what it deployed in the stack output `deployed` (see `deployed_record`); the next `up` reads it
back (components/config.py) and these rules compare it with the new spec.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.spec.collector import DNS_LABEL_RE, VERSION_RE, Collector
from components.spec.model import ClusterSpec, PoolSpec

DEPLOYED_OUTPUT = "deployed"
# A stack deployed by an earlier version of the program has its nodes (stack output `nodes`)
# but no record: components/config.py passes them under this key.
UNRECORDED_NODES = "unrecordedNodes"


@dataclass(frozen=True)
class Deployed:
    """What the previous successful `up` deployed."""

    control_planes: tuple[str, ...]  # in join order: the first ran kubeadm init
    endpoint: str  # host:port every kubelet and kubeconfig reaches the API server at
    kubernetes_version: str
    nodes: tuple[str, ...]
    # Each node's address: a node keeps it while it stays (see assign_nodes). Empty in a record
    # written before addresses were, when the stack has no output `nodes` either.
    addresses: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Unrecorded:
    """A stack deployed before the program recorded what it deploys: its nodes only."""

    nodes: tuple[str, ...]


def deployed_record(spec: ClusterSpec) -> dict[str, Any]:
    """The stack output `deployed` (strings only: numbers come back as floats)."""
    return {"controlPlanes": [n.name for n in spec.control_plane_nodes],
            "controlPlaneEndpoint": spec.control_plane_endpoint,
            "kubernetesVersion": spec.kubernetes.version,
            "nodes": [n.name for n in spec.nodes],
            "addresses": {n.name: str(n.ip) for n in spec.nodes}}


def _addresses(value: Any) -> bool:
    if not isinstance(value, Mapping) or not all(isinstance(a, str) for a in value.values()):
        return False
    try:
        for address in value.values():
            ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return all(isinstance(n, str) and DNS_LABEL_RE.match(n) for n in value)


def _names(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(n, str) and DNS_LABEL_RE.match(n) for n in value)


def read_deployed(c: Collector, raw: Any) -> Deployed | Unrecorded | None:
    """The previous `up`'s record; None for a stack never deployed."""
    if raw is None:
        return None
    path = f"(stack output {DEPLOYED_OUTPUT})"
    record = raw if isinstance(raw, Mapping) else {}
    if set(record) == {UNRECORDED_NODES}:
        return Unrecorded(tuple(str(n) for n in record[UNRECORDED_NODES]))
    names, endpoint = record.get("controlPlanes"), record.get("controlPlaneEndpoint")
    version, nodes = record.get("kubernetesVersion"), record.get("nodes")
    addresses = record.get("addresses", {})
    if not (_names(names) and _names(nodes) and isinstance(endpoint, str)
            and isinstance(version, str) and VERSION_RE.match(version)
            and _addresses(addresses)):
        c.error(path, f"{raw!r} is not a record this program wrote; without it no change to a "
                      "running cluster can be checked. Restore it from the stack's history "
                      "(`pulumi stack history`, `pulumi stack export`)")
        return None
    assert isinstance(names, list) and isinstance(nodes, list) and isinstance(version, str)
    return Deployed(tuple(names), str(endpoint), version, tuple(nodes),
                    {str(n): str(a) for n, a in addresses.items()})


def check_control_planes(c: Collector, pool: PoolSpec, previous: Deployed | None) -> None:
    """etcd keeps quorum through every change: odd counts, at most one removal per `up`, and
    the first control plane (init ran there; joins and removals run from it) stays."""
    path = f"pools[{pool.name}].count"
    count, names = pool.count, pool.node_names
    even = count % 2 == 0
    if previous is None:
        if even:
            c.error(path, f"{count} control planes cannot keep etcd quorum; use 1, or 3/5/7 "
                          "for HA")
        return
    before = previous.control_planes
    if names and names[0] != before[0]:
        c.error(f"pools[{pool.name}]", f"the first control plane is {before[0]} (kubeadm init "
                                       "ran there; joins and removals run from it): it cannot "
                                       "be removed or renamed, and must stay the pool's first")
    removed = [n for n in before if n not in names]
    if len(removed) > 1:
        c.error(path, f"{len(before)} -> {count} would remove {len(removed)} control planes "
                      f"({', '.join(removed)}) in one `pulumi up`; remove one per `pulumi up` "
                      f"({len(before)} -> {len(before) - 1}, and so on): each leaves etcd "
                      "before its VM goes, and the members that stay must keep quorum")
    elif even and not (len(removed) == 1 and count == len(before) - 1) and names != before:
        c.error(path, f"{count} control planes tolerate no more failures than {count - 1} and "
                      f"a join that fails half-way loses etcd quorum; use an odd count (1, 3, "
                      f"5). An even count is accepted only on the way down, one removal per "
                      f"`pulumi up` (3 -> 2 -> 1)")


def check_running_cluster(c: Collector, spec: ClusterSpec,
                          previous: Deployed | Unrecorded | None) -> None:
    """What the running cluster holds: its endpoint; Kubernetes goes up one minor at a time."""
    if isinstance(previous, Unrecorded):
        gone = [n for n in previous.nodes if n not in {m.name for m in spec.nodes}]
        if gone:
            c.error("pools", f"this stack was deployed by an earlier version of the program, "
                             f"which recorded nothing to check a removal against: run `pulumi "
                             f"up` once with {', '.join(gone)} still in place (it records the "
                             f"cluster and declares how nodes leave it), then remove them")
        return
    if previous is None:
        return
    _check_endpoint(c, spec, previous)
    _check_kubernetes_version(c, spec, previous)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _check_kubernetes_version(c: Collector, spec: ClusterSpec, previous: Deployed) -> None:
    """kubeadm upgrades one minor version at a time and never downgrades; nodes that join
    while the control plane still runs the old version would run a kubelet newer than it."""
    path = "kubernetes.version"
    before, after = previous.kubernetes_version, spec.kubernetes.version
    old, new = _version(before), _version(after)
    if new == old:
        return
    if new < old:
        c.error(path, f"{before} -> {after} is a downgrade, which kubeadm cannot do; keep "
                      f"{before} (or a newer version)")
    elif new[0] != old[0] or new[1] > old[1] + 1:
        c.error(path, f"{before} -> {after} skips a minor version: kubeadm upgrades one at a "
                      f"time; go to the latest {old[0]}.{old[1] + 1}.x first")
    added = [n.name for n in spec.nodes if n.name not in previous.nodes]
    if added:
        c.error(path, f"{before} -> {after} while adding {', '.join(added)}: upgrade and add "
                      "nodes in separate `pulumi up`s (a node joining an old control plane "
                      "with a newer kubelet breaks the version skew rules)")


def _check_endpoint(c: Collector, spec: ClusterSpec, previous: Deployed) -> None:
    """Every kubelet and kubeconfig of a running cluster holds its endpoint."""
    if spec.control_plane_endpoint != previous.endpoint:
        c.error("network.controlPlaneVip", f"the API server's endpoint would change from "
                                           f"{previous.endpoint} to "
                                           f"{spec.control_plane_endpoint}: every node and "
                                           "kubeconfig of the running cluster uses it; keep "
                                           "network.cidr, network.controlPlaneVip and the "
                                           "first control plane as they are")


def transition_warnings(spec: ClusterSpec, previous: Deployed | Unrecorded | None
                        ) -> list[str]:
    count = spec.control_plane_pool.count
    if isinstance(previous, Deployed) and count % 2 == 0:
        return [f"{count} control planes tolerate no more failures than {count - 1}: go on "
                f"to {count - 1}, or back to {count + 1}"]
    return []
