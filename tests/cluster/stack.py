"""The lab stack: the dev stack reshaped into two small nodes whose every artifact comes from
the lab mirror (tools/build-lab-mirror.sh) through the program's own mirror settings, with
`mirrors.offline` on. The pins are the mirror's versions and the checksums of its locally
built binaries (which differ from upstream's), so the stack's override path is what the
nodes verify against."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from tests.graph.harness import stack_config
from tests.lab.mirror import FILES_PORT, REGISTRY_PORT, Mirror, stack_sections

PROJECT_KEY = "sandboxed-k8s:"
# Software emulation: kubeadm's 4-minute waits, the controllers' 15 s leases and the
# provider's 32 s requests are too short.
SLOW_HOST = {"controlPlaneTimeout": "40m", "apiClientTimeout": "5m",
             "leaderElection": {"leaseDuration": "2m", "renewDeadline": "90s",
                                "retryPeriod": "20s"}}


def p(key: str) -> str:
    return f"{PROJECT_KEY}{key}"


def lab_config(mirror: Mirror, cidr: str, *, worker_memory_mib: int = 2048,
               master_memory_mib: int = 3072, upgraded: bool = False) -> dict[str, Any]:
    """Keys with the project prefix, as in a stack file; nodes from host 10 of `cidr`, the
    mirrors on its first address. `upgraded`: Kubernetes at the mirror's upgrade version."""
    gateway = str(next(ipaddress.IPv4Network(cidr).hosts()))
    files = f"http://{gateway}:{FILES_PORT}"
    config = copy.deepcopy(stack_config("dev"))
    config[p("mirrors")] = {"files": files, "registry": f"http://{gateway}:{REGISTRY_PORT}",
                            "apt": f"{files}/debian", "aptSecurity": f"{files}/debian-security",
                            "offline": True}
    for section, values in stack_sections(mirror, files, upgraded=upgraded).items():
        pins = {k: v for k, v in values.items() if k != "baseUrl"}  # mirrors.files decides
        config[p(section)] = {**config.get(p(section), {}), **pins}
    config[p("kubernetes")].update(SLOW_HOST, clusterName="sandboxed-k8s-lab")
    config[p("gvisor")].update(layout="binaries", platform="systrap")
    config[p("network")] = {"name": "lab", "mode": "nat", "cidr": cidr}
    config[p("pools")] = [
        {"name": "control-plane", "role": "control-plane", "names": ["master"], "cpu": 2,
         "memoryMiB": master_memory_mib, "diskGiB": 10},
        {"name": "gvisor", "role": "worker", "names": ["worker1"], "runtimes": ["gvisor"],
         "cpu": 1, "memoryMiB": worker_memory_mib, "diskGiB": 10},
    ]
    # Two tenants: verify checks that one cannot reach the other.
    config[p("tenants")] = [{"name": "tenant-a"}, {"name": "tenant-b"}]
    return config


# The HA lab: three control planes behind kube-vip's virtual IP (and a worker the stack needs,
# which the HA lab does not boot).
HA_CONTROL_PLANES = ("cp1", "cp2", "cp3")


def ha_lab_config(mirror: Mirror, cidr: str, vip: str) -> dict[str, Any]:
    """The lab stack as three control planes (stacked etcd) on `vip` and one plain worker."""
    config = lab_config(mirror, cidr)
    config[p("network")]["controlPlaneVip"] = vip
    # Three etcd members on two emulated cores: with etcd's 100 ms heartbeats the leader
    # changed every few seconds and the API's reads (and a join's member list) timed out.
    config[p("kubernetes")]["etcd"] = {"heartbeatIntervalMs": 500, "electionTimeoutMs": 5000}
    config[p("pools")] = [
        {"name": "control-plane", "role": "control-plane", "count": len(HA_CONTROL_PLANES),
         "names": list(HA_CONTROL_PLANES), "cpu": 2, "memoryMiB": 2560, "diskGiB": 10},
        {"name": "plain", "role": "worker", "names": ["w1"], "cpu": 1, "memoryMiB": 2048,
         "diskGiB": 10},
    ]
    config[p("tenants")] = []
    return config
