"""`load()`: the whole stack configuration validated at once into a ClusterSpec."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from components.spec.artifacts import internet_fetches
from components.spec.collector import IMAGE_TAG_RE, LIBVIRT_URI_RE, Collector
from components.spec.defaults import DEFAULTS
from components.spec.kubernetes import read_kubernetes
from components.spec.mirrors import effective_defaults, read_mirrors, with_files_mirror
from components.spec.model import CPU_MODES, DOMAIN_TYPES, ClusterSpec, ConfigError, PoolSpec
from components.spec.network import assign_nodes, check_disjoint, read_network, with_vip
from components.spec.pools import MachineDefaults, read_boot, read_pools
from components.spec.runtimes import (
    check_sandbox_hosts,
    read_gvisor,
    read_kata,
    read_node_runtimes,
)
from components.spec.tenants import read_tenants
from components.spec.transitions import (
    Deployed,
    check_control_planes,
    check_running_cluster,
    read_deployed,
)

_LINUX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def load(raw: Mapping[str, Any], stack: str, deployed: Any = None) -> ClusterSpec:
    """Validate the project's config (keys without the project prefix) into a ClusterSpec.
    `deployed`: the previous `up`'s record (stack output `deployed`), None for a new stack."""
    c = Collector()
    previous = read_deployed(c, deployed)
    top = c.section(raw, "", DEFAULTS)

    admin_user = c.string(top["adminUser"], "adminUser", _LINUX_USER, "a Linux user name")
    if admin_user == "root":
        c.error("adminUser", "must not be root")
    mirrors = read_mirrors(c, top["mirrors"])
    defaults = effective_defaults(mirrors)
    top = with_files_mirror(top, mirrors)
    libvirt = c.section(top["libvirt"], "libvirt", defaults["libvirt"])
    c.string(libvirt["uri"], "libvirt.uri", LIBVIRT_URI_RE, "a libvirt URI such as qemu:///system")
    storage_pool = c.string(libvirt["storagePool"], "libvirt.storagePool")

    network, raw_vip = read_network(c, top["network"], stack)
    kubernetes = read_kubernetes(c, top["kubernetes"], defaults)
    check_disjoint(c, {"network.cidr": network.cidr, "kubernetes.podCidr": kubernetes.pod_cidr,
                       "kubernetes.serviceCidr": kubernetes.service_cidr})
    runtimes = read_node_runtimes(c, top, defaults)
    gvisor = read_gvisor(c, top["gvisor"], defaults)

    machine = MachineDefaults(
        c.choice(libvirt["domainType"], "libvirt.domainType", DOMAIN_TYPES),
        (c.choice(libvirt["cpuMode"], "libvirt.cpuMode", CPU_MODES)
         if libvirt["cpuMode"] is not None else None),
        read_boot(c, libvirt["boot"], "libvirt.boot"),
    )
    pools = read_pools(c, top["pools"], libvirt, machine)
    kata = read_kata(c, top["kata"], pools, defaults)
    kube_vip_raw = c.section(top["kubeVip"], "kubeVip", DEFAULTS["kubeVip"])
    kube_vip_version = c.string(kube_vip_raw["version"], "kubeVip.version", IMAGE_TAG_RE,
                                "a tag like v0.9.2")
    check_sandbox_hosts(c, pools, gvisor, runtimes.containerd)
    tenants = read_tenants(c, top["tenants"])
    # Unless the pools or their runtimes are themselves invalid (reported already).
    runtimes_read = c.ok("pools") and not any(
        f.startswith("pools[") and ".runtimes" in f for f in c.failed)
    if tenants and runtimes_read and not any(p.runtimes for p in pools):
        c.error("tenants", "tenant pods must run sandboxed, but no pool runs gvisor or kata")

    control_plane = _check_pools(c, pools,
                                 previous if isinstance(previous, Deployed) else None)
    network = with_vip(c, network, raw_vip, control_plane)
    nodes = assign_nodes(c, network, pools, stack,
                         previous.addresses if isinstance(previous, Deployed) else None)

    if c.problems:
        raise ConfigError(c.problems)
    spec = ClusterSpec(
        stack=stack,
        admin_user=admin_user,
        storage_pool=storage_pool,
        network=network,
        kubernetes=kubernetes,
        containerd=runtimes.containerd,
        runc=runtimes.runc,
        cni_plugins=runtimes.cni_plugins,
        crictl=runtimes.crictl,
        cni=runtimes.cni,
        gvisor=gvisor,
        kata=kata,
        kube_vip_version=kube_vip_version,
        pools=tuple(pools),
        nodes=tuple(nodes),
        tenants=tuple(tenants),
        mirrors=mirrors,
    )
    check_running_cluster(c, spec, previous)
    if c.problems:
        raise ConfigError(c.problems)
    if mirrors.offline and (online := internet_fetches(spec)):
        raise ConfigError(["mirrors.offline: these would still come from the internet; name a "
                           "mirror (mirrors.files, mirrors.registry, mirrors.apt, "
                           "mirrors.aptSecurity) or a source for each:",
                           *(f"  {f.kind} {f.source}" for f in online)])
    return spec


def _check_pools(c: Collector, pools: Sequence[PoolSpec],
                 previous: Deployed | None) -> PoolSpec | None:
    """Cluster-wide rules over the pools; the control-plane pool when there is exactly one."""
    seen: set[str] = set()
    for p in pools:
        if p.name in seen:
            c.error(f"pools[{p.name}].name", "duplicate pool name")
        seen.add(p.name)
    # A pool whose role or count is invalid (reported already) cannot be counted.
    roles_read = not any(f.startswith("pools[") and f.endswith(".role") for f in c.failed)
    counts_read = not any(f.startswith("pools[") and f.endswith(".count") for f in c.failed)
    control_planes = [p for p in pools if p.is_control_plane]
    if pools and roles_read and len(control_planes) != 1:
        c.error("pools", f"exactly one pool must have role control-plane (found "
                         f"{len(control_planes)})")
    if pools and roles_read and counts_read and \
            not any(not p.is_control_plane and p.count > 0 for p in pools):
        c.error("pools", "at least one worker pool with count > 0 is required")
    if not control_planes:
        return None
    cp = control_planes[0]
    if c.ok(f"pools[{cp.name}].count"):
        # Without valid names, only the count can be judged, not what changes.
        check_control_planes(c, cp, previous if c.ok(f"pools[{cp.name}].names") else None)
    return cp


def from_pulumi_config(get: Callable[[str], Any], keys: Sequence[str], stack: str,
                       deployed: Any = None) -> ClusterSpec:
    """Build the raw mapping from a config getter (object values parsed) and validate it."""
    return load({k: get(k) for k in keys}, stack, deployed)
