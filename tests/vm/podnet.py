"""Pod-like network namespaces in the test VM: veths on a bridge named like Flannel's (cni0),
addresses in the stack's pod CIDR, as the bridge CNI plugin would set them up, with no CNI or
kubelet. Used to see what the node's static pod firewall lets through."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from components.render.firewall import POD_BRIDGE

from .harness import BootedVM

GATEWAY = "10.244.0.1"
POD_A = "10.244.0.10"  # the client
POD_B = "10.244.0.11"  # listens on 8080 (IPv4 and IPv6) and 53
POD_B6 = "fd00:5a::b"
KUBE_DNS_VIP = "10.96.0.10"  # a Service address DNAT'ed to POD_B, as kube-proxy does
PROBE_TIMEOUT_S = 4

SETUP = f"""\
set -eu
ip link add {POD_BRIDGE} type bridge 2>/dev/null || true
ip addr replace {GATEWAY}/24 dev {POD_BRIDGE}
ip link set {POD_BRIDGE} up
for spec in "a {POD_A} fd00:5a::a" "b {POD_B} {POD_B6}"; do
  set -- $spec
  ns=sk8s-pod-$1
  ip netns del "$ns" 2>/dev/null || true
  ip link del "veth-sk8s-$1" 2>/dev/null || true
  ip netns add "$ns"
  ip link add "veth-sk8s-$1" type veth peer name eth0 netns "$ns"
  ip link set "veth-sk8s-$1" master {POD_BRIDGE} up
  ip -n "$ns" addr add "$2/24" dev eth0
  ip -n "$ns" addr add "$3/64" dev eth0 nodad
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via {GATEWAY}
done
for port in 8080 53; do
  setsid -f ip netns exec sk8s-pod-b python3 -m http.server "$port" --bind :: \\
    >/dev/null 2>&1 </dev/null
done
nft -f - <<'NFT'
table ip sk8s_test_dnat
delete table ip sk8s_test_dnat
table ip sk8s_test_dnat {{
  chain prerouting {{
    type nat hook prerouting priority dstnat;
    ip daddr {KUBE_DNS_VIP} tcp dport 53 dnat to {POD_B}:53
  }}
}}
NFT
"""

TEARDOWN = f"""\
pkill -f 'http.server (8080|53) --bind ::' || true
ip netns del sk8s-pod-a 2>/dev/null || true
ip netns del sk8s-pod-b 2>/dev/null || true
ip link del {POD_BRIDGE} 2>/dev/null || true
nft delete table ip sk8s_test_dnat 2>/dev/null || true
"""

PROBE = """\
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(float(sys.argv[3]))
try:
    s.connect((host, port))
    print("open")
except socket.timeout:
    print("timeout")
except OSError as e:
    print(f"error {e.errno}")
"""


@dataclass
class PodNetwork:
    vm: BootedVM

    def _sudo(self, script: str, check: bool = True) -> str:
        result = self.vm.run(f"sudo -n bash -c {shlex.quote(script)}", check=check,
                             timeout=120)
        return result.stdout

    def up(self) -> None:
        self._sudo(SETUP)
        # the listeners are up before anything is probed
        for port in (8080, 53):
            self._sudo(f"for _ in $(seq 50); do ip netns exec sk8s-pod-b ss -ltn "
                       f"| grep -q ':{port} ' && exit 0; sleep 0.2; done; exit 1")

    def down(self) -> None:
        self._sudo(TEARDOWN, check=False)

    def connect(self, host: str, port: int, from_pod: str = "a") -> str:
        """'open', 'timeout' (dropped) or 'error N' for a TCP connection from a pod."""
        prefix = "" if from_pod == "node" else f"ip netns exec sk8s-pod-{from_pod} "
        out = self.vm.run(
            f"sudo -n {prefix}python3 -c {shlex.quote(PROBE)} {host} {port} "
            f"{PROBE_TIMEOUT_S}", timeout=60).stdout
        return out.strip()
