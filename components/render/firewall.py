"""The node's static pod firewall: an nftables ruleset every node loads at boot, before
containerd and the kubelet start, owned by no controller.

NetworkPolicy enforcement runs in a pod (kube-network-policies): while it is being rolled out,
drained or is crashing, and before it first syncs, nothing it owns filters. This table is the
floor beneath it: new connections from pods to the node itself, to other nodes, to the
hypervisor host and its networks (every non-public range outside the pod network) and to
link-local are dropped, whatever the policies say, and IPv6 on the pod bridge is dropped.

It filters after DNAT (input/forward hooks), so a Service is judged by the pod it leads to:
kube-dns (a Service VIP) reaches CoreDNS pods inside the pod network and passes, while the
`kubernetes` Service, which leads to the control planes' addresses, does not.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

TABLE = "sandboxed_k8s_pods"
POD_BRIDGE = "cni0"  # the bridge Flannel's CNI delegate creates on every node
# The bridge's ports: the host ends of the pods' veth pairs (the bridge CNI names them veth*).
POD_PORTS = "veth*"
RULESET_PATH = "/etc/sandboxed-k8s/pod-firewall.nft"
UNIT = "sandboxed-k8s-pod-firewall.service"


@dataclass(frozen=True)
class SystemPodDestination:
    """A host address system pods in the pod network must reach (CoreDNS: the API server
    behind the `kubernetes` Service, its upstream DNS). Only nodes that can run no tenant pod
    get these exceptions."""

    address: ipaddress.IPv4Address
    protocol: str  # tcp or udp
    port: int

    def element(self) -> str:
        return f"{self.address} . {self.protocol} . {self.port}"


def render_ruleset(pod_cidr: str, denied: Sequence[str],
                   system_pod_destinations: Sequence[SystemPodDestination] = (),
                   bridge: str = POD_BRIDGE) -> str:
    """An `nft -f` file that replaces both tables in one transaction (so re-loading it is
    idempotent and never leaves a moment without them)."""
    pods = ipaddress.IPv4Network(pod_cidr)
    ranges = ", ".join(str(n) for n in ipaddress.collapse_addresses(
        ipaddress.IPv4Network(c) for c in denied))
    exceptions = []
    if system_pod_destinations:
        elements = ", ".join(d.element() for d in system_pod_destinations)
        exceptions = [
            "\tset system_pod_destinations {",
            "\t\ttype ipv4_addr . inet_proto . inet_service",
            f"\t\telements = {{ {elements} }}",
            "\t}",
        ]
    allow_system = ("\t\tip daddr . meta l4proto . th dport @system_pod_destinations accept"
                    if system_pod_destinations else None)
    new_from_pods = [f"\t\tct state new ip saddr {pods} jump {{chain}}",
                     f'\t\tct state new iifname "{bridge}" jump {{chain}}']
    lines = [
        "# Rendered by sandboxed-k8s; loaded at boot by " + UNIT + ".",
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        *exceptions,
        "\tset denied {",
        "\t\ttype ipv4_addr",
        "\t\tflags interval",
        f"\t\telements = {{ {ranges} }}",
        "\t}",
        "\tchain input {",
        "\t\ttype filter hook input priority filter - 10; policy accept;",
        f'\t\tiifname "{bridge}" meta nfproto ipv6 drop',
        *(line.format(chain="pod_to_node") for line in new_from_pods),
        "\t}",
        "\tchain pod_to_node {",
        *([allow_system] if allow_system else []),
        "\t\tcounter drop",
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter - 10; policy accept;",
        f'\t\tiifname "{bridge}" meta nfproto ipv6 drop',
        *(line.format(chain="pod_egress") for line in new_from_pods),
        "\t}",
        "\tchain pod_egress {",
        f"\t\tip daddr {pods} accept",
        *([allow_system] if allow_system else []),
        "\t\tip daddr @denied counter drop",
        "\t}",
        "}",
        # Bridged frames between pods (and to the node) never reach the inet hooks unless
        # br_netfilter is loaded: IPv6 is dropped at the bridge itself, by port name (the
        # bridge-name match needs a module not every kernel has).
        f"table bridge {TABLE}",
        f"delete table bridge {TABLE}",
        f"table bridge {TABLE} {{",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter - 10; policy accept;",
        f'\t\tiifname "{POD_PORTS}" ether type ip6 drop',
        "\t}",
        "\tchain input {",
        "\t\ttype filter hook input priority filter - 10; policy accept;",
        f'\t\tiifname "{POD_PORTS}" ether type ip6 drop',
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_unit(ruleset_path: str = RULESET_PATH) -> str:
    """Loads the table early in boot; containerd and the kubelet require it, so a table that
    fails to load keeps pods from starting (fail closed). No ExecStop: stopping the unit never
    removes the table."""
    return "\n".join([
        "# Rendered by sandboxed-k8s.",
        "[Unit]",
        "Description=sandboxed-k8s static pod firewall (nftables)",
        "DefaultDependencies=no",
        "After=local-fs.target",
        "Before=network-pre.target containerd.service kubelet.service",
        "Wants=network-pre.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"ExecStart=/usr/sbin/nft -f {ruleset_path}",
        "",
        "[Install]",
        "WantedBy=sysinit.target",
        "RequiredBy=containerd.service kubelet.service",
        "",
    ])
