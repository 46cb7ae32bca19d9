"""The node network: addresses, gateway, DNS, the control-plane VIP, and each node's address."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from components.spec.collector import DNS_LABEL_RE, DNS_NAME_RE, Collector
from components.spec.defaults import DEFAULTS
from components.spec.model import NETWORK_MODES, NetworkSpec, NodeSpec, PoolSpec
from components.spec.pools import node_mac


def read_network(c: Collector, raw: Any, stack: str) -> tuple[NetworkSpec, Any]:
    """The network without its VIP (which depends on the pools), and the raw VIP value."""
    net = c.section(raw, "network", DEFAULTS["network"])
    mode = c.choice(net["mode"], "network.mode", NETWORK_MODES)
    cidr = c.network(net["cidr"], "network.cidr")
    hosts = list(cidr.hosts())
    if mode == "bridge" and not net["bridge"]:
        c.error("network.bridge", "is required when network.mode is bridge (an existing host "
                                  "bridge, e.g. br0)")
    gateway = c.address(net["gateway"], "network.gateway") if net["gateway"] else (
        hosts[0] if hosts else None)
    if gateway is not None and hosts and c.ok("network.cidr") and gateway not in cidr:
        c.error("network.gateway", f"{gateway} is outside network.cidr {cidr}")
    dns: list[ipaddress.IPv4Address] = []
    if net["dns"] is None:
        if gateway is not None:
            dns = [gateway]
    elif not isinstance(net["dns"], list):
        c.error("network.dns", "must be a list of IPv4 addresses")
    else:
        dns = [a for j, d in enumerate(net["dns"]) if (a := c.address(d, f"network.dns[{j}]"))]
    first_host = c.integer(net["firstNodeHost"], "network.firstNodeHost", 2, 65000)
    name = c.string(net["name"], "network.name", DNS_LABEL_RE, "a DNS label")
    domain = net["domain"] if net["domain"] is not None else f"{stack}-{name}.internal"
    domain = c.string(domain, "network.domain", DNS_NAME_RE, "a DNS name such as k8s.internal")
    if gateway is None and not c.problems:
        c.error("network.cidr", f"{cidr} has no address for the gateway")
    spec = NetworkSpec(name, mode, cidr, domain, net["bridge"],
                       gateway or ipaddress.IPv4Address("0.0.0.0"), tuple(dns), None, first_host,
                       denied_egress=read_denied_egress(c, net["deniedEgressCidrs"]))
    return spec, net["controlPlaneVip"]


def read_denied_egress(c: Collector, raw: Any) -> tuple[ipaddress.IPv4Network, ...]:
    """network.deniedEgressCidrs: more ranges tenant pods may not reach (a public LAN, the
    hypervisor host's public address)."""
    path = "network.deniedEgressCidrs"
    if not isinstance(raw, list):
        c.error(path, "must be a list of IPv4 networks in CIDR form")
        return ()
    nets = []
    for j, value in enumerate(raw):
        known = len(c.problems)
        net = c.network(value, f"{path}[{j}]")
        if len(c.problems) > known:
            continue
        if net.prefixlen == 0:
            c.error(f"{path}[{j}]", "0.0.0.0/0 would deny all egress")
        else:
            nets.append(net)
    return tuple(nets)


def check_disjoint(c: Collector, ranges: Mapping[str, ipaddress.IPv4Network]) -> None:
    items = [(key, net) for key, net in ranges.items() if c.ok(key)]
    for i, (a_key, a_net) in enumerate(items):
        for b_key, b_net in items[i + 1:]:
            if a_net.prefixlen and b_net.prefixlen and a_net.overlaps(b_net):
                c.error(b_key, f"{b_net} overlaps {a_key} {a_net}; the three ranges must be "
                               "disjoint")


def with_vip(c: Collector, network: NetworkSpec, raw_vip: Any,
             control_plane: PoolSpec | None) -> NetworkSpec:
    """HA control planes need a VIP in the node network; a single one uses its own address,
    or the VIP when one is set (a cluster shrunk from HA keeps its endpoint)."""
    if control_plane is None or (control_plane.count <= 1 and raw_vip is None):
        return network
    if raw_vip is None:
        c.error("network.controlPlaneVip", "is required for HA (more than one control plane): "
                                           "a free address in network.cidr")
        return network
    vip = c.address(raw_vip, "network.controlPlaneVip")
    if vip is not None and c.ok("network.cidr") and vip not in network.cidr:
        c.error("network.controlPlaneVip", f"{vip} is outside network.cidr {network.cidr}")
    return dataclasses.replace(network, control_plane_vip=vip)


def assign_nodes(c: Collector, network: NetworkSpec, pools: Sequence[PoolSpec], stack: str,
                 deployed: Mapping[str, str] | None = None) -> list[NodeSpec]:
    """Addresses in pool order from `firstNodeHost` upward; names unique across pools.

    `deployed` (the previous `up`'s node -> address): a node deployed before keeps its address
    while it is in the network, and a new node never takes one the previous `up` used, so
    adding or removing a node moves no other (an address is in the node's seed and in every
    step that reaches it: a moved node would be a replaced one). On a new stack this is plain
    pool order."""
    cidr = network.cidr
    kept = {name: ip for name, text in (deployed or {}).items()
            if (ip := ipaddress.IPv4Address(text)) in cidr}
    # Leaving nodes keep theirs until the `up` that removes them is done.
    taken = set(kept.values())
    nodes: list[NodeSpec] = []
    seen: dict[str, str] = {}
    # Addresses follow from the range, the first host and the gateway: if one is invalid
    # (reported already), what the nodes would get says nothing more.
    addressed = c.ok("network.cidr", "network.firstNodeHost", "network.gateway")
    homeless: list[str] = []
    number = int(cidr.network_address) + network.first_node_host
    total = sum(len(p.node_names) for p in pools)
    for p in pools:
        for node_name in p.node_names:
            if node_name in seen:
                c.error(f"pools[{p.name}].names", f"node name {node_name!r} is also used by "
                                                  f"pool {seen[node_name]!r}")
            seen[node_name] = p.name
            if node_name in kept:
                ip = kept[node_name]
            else:
                while (ip := ipaddress.IPv4Address(min(number, 2**32 - 1))) in taken:
                    number += 1
                number += 1
            if addressed and cidr.prefixlen and (ip not in cidr or
                                                 ip == cidr.broadcast_address):
                homeless.append(node_name)
                continue
            if addressed and ip in (network.gateway, network.control_plane_vip):
                c.error("network.firstNodeHost", f"node {node_name} would get {ip}, which is "
                                                 "the gateway or control-plane VIP")
            nodes.append(NodeSpec(node_name, p, ip, node_mac(stack, node_name)))
    if homeless:
        c.error("network.cidr", f"{cidr} has no room for {len(homeless)} of the "
                                f"{total} nodes ({', '.join(homeless)}): addresses are "
                                f"assigned from host {network.first_node_host} upward")
    if len({p.libvirt_uri for p in pools}) > 1 and network.mode != "bridge":
        c.error("network.mode", "pools on several libvirt hosts need network.mode bridge (a "
                                "bridge on a segment every host shares); a NAT network exists "
                                "on one host only")
    return nodes
