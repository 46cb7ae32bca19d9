"""Stack config validation: every bad value is reported at once, naming its key path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.spec import (
    SANDBOX_TAINT_KEY,
    ConfigError,
    load,
    node_mac,
    sandbox_label,
)
from tests.graph.harness import stack_config


def dev_config() -> dict[str, Any]:
    """The dev stack's config as the program sees it (keys without the project prefix)."""
    return {k.split(":", 1)[1]: copy.deepcopy(v) for k, v in stack_config("dev").items()}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """dev config with one value replaced; path like 'kubernetes.version' or 'pools.1.cpu'."""
    config = dev_config()
    *parents, last = path.split(".")
    target: Any = config
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return config


BAD_CONFIGS = [
    # (change, key path expected in the message, fragment of the reason)
    (("pools.1.runtimes", ["firecracker"]), "pools[gvisor].runtimes[0]", "unknown runtime"),
    (("pools.1.runtimes", ["gvisor", "gvisor"]), "pools[gvisor].runtimes[1]", "twice"),
    (("pools.1.runtimes", ["runc"]), "pools[gvisor].runtimes[0]", "always installed"),
    (("pools.2.name", "gvisor"), "pools[gvisor].name", "duplicate pool name"),
    (("pools.2.names", ["worker1"]), "pools[plain].names", "also used"),
    (("network.cidr", "10.244.0.0/24"), "kubernetes.podCidr", "overlaps network.cidr"),
    (("kubernetes.serviceCidr", "10.244.128.0/20"), "kubernetes.serviceCidr", "overlaps"),
    (("network.cidr", "10.17.0.300/24"), "network.cidr", "not an IPv4 network"),
    (("pools.0.count", 2), "pools[control-plane].count", "quorum"),
    (("pools.0.count", 0), "pools[control-plane].count", "out of range"),
    (("pools.1.memoryMiB", 1024), "pools[gvisor].memoryMiB", "1700 MiB"),
    (("pools.0.cpu", 1), "pools[control-plane].cpu", "at least 2"),
    (("kubernetes.version", "v1.34"), "kubernetes.version", "malformed"),
    (("kubernetes.version", "latest"), "kubernetes.version", "malformed"),
    (("gvisor.release", "latest"), "gvisor.release", "malformed"),
    (("containerd.version", "1.5.9"), "containerd.version", "not supported"),
    (("containerd.version", "1.6.20"), "containerd.version", "1.7 or newer"),
    (("containerd.sha256", "abc"), "containerd.sha256", "sha256"),
    (("gvisor.runscSha512", "0" * 64), "gvisor.runscSha512", "sha512"),
    (("gvisor.platform", "hvf"), "gvisor.platform", "choose one of"),
    (("gvisor.flags", {"network": "host"}), "gvisor.flags.network", "not an allowed runsc flag"),
    (("pools.1.cpus", 4), "pools[1].cpus", "unknown key"),
    (("kubernetes.podCIDR", "10.0.0.0/8"), "kubernetes.podCIDR", "unknown key"),
    (("pools.1.taints", [{"key": "a", "value": "b", "effect": "Sometimes"}]),
     "pools[gvisor].taints[0].effect", "choose one of"),
    (("pools.1.labels", {"sandboxed-k8s.io/pool": "x"}),
     "pools[gvisor].labels.sandboxed-k8s.io/pool", "reserved"),
    (("pools.0.runtimes", ["gvisor"]), "pools[control-plane].runtimes", "worker pools only"),
    (("pools.0.role", "master"), "pools[control-plane].role", "choose one of"),
    (("libvirt.uri", "vbox:///session"), "libvirt.uri", "malformed"),
    (("pools.2.libvirtUri", "qemu+ssh://u@h2/system"), "network.mode", "bridge"),
    (("network.mode", "bridge"), "network.bridge", "required"),
    (("adminUser", "root"), "adminUser", "must not be root"),
    (("kubernetes.tokenTtl", "forever"), "kubernetes.tokenTtl", "malformed"),
    (("kubernetes.drainTimeout", "until done"), "kubernetes.drainTimeout", "malformed"),
    (("pools.1.names", ["a", "b"]), "pools[gvisor].names", "exactly `count`"),
    (("tenants", [{"name": "kube-system"}]), "tenants[kube-system].name", "reserved"),
    (("tenants", [{"name": "a"}, {"name": "a"}]), "tenants[a].name", "duplicate"),
    (("tenants", [{"name": "a", "quota": {"gpus": 1}}]), "tenants[a].quota.gpus",
     "unknown key"),
    (("tenants", [{"name": "a", "limits": {"cpu": "lots"}}]), "tenants[a].limits.cpu",
     "not a Kubernetes quantity"),
    (("tenants", [{"name": "Tenant_A"}]), "tenants[0].name", "malformed"),
    (("tenants", [{"name": "a", "allowNodeServices": "yes"}]), "tenants[a].allowNodeServices",
     "true or false"),
    (("tenants", {"name": "a"}), "tenants", "must be a list"),
    (("libvirt.domainType", "xen"), "libvirt.domainType", "choose one of"),
    (("pools.2.domainType", "lxc"), "pools[plain].domainType", "choose one of"),
    (("pools.2.cpuMode", "qemu64"), "pools[plain].cpuMode", "choose one of"),
    (("libvirt.cpuMode", "custom"), "libvirt.cpuMode", "choose one of"),
    (("pools.2", {"name": "plain", "domainType": "qemu", "cpuMode": "host-passthrough"}),
     "pools[plain].cpuMode", "needs KVM"),
    (("pools.2", {"name": "plain", "runtimes": ["kata"], "domainType": "qemu"}),
     "pools[plain].domainType", "need KVM"),
    (("libvirt.boot", {"kernel": "vmlinuz"}), "libvirt.boot.kernel", "absolute path"),
    (("libvirt.boot", {"initrd": "/boot/initrd.img"}), "libvirt.boot.kernel", "non-empty"),
    (("pools.2.boot", {"kernel": "/k", "cmdline": ["root=/dev/vda"]}),
     "pools[plain].boot.cmdline", "string of kernel arguments"),
    (("pools.2.boot", {"kernel": "/k", "append": "x"}), "pools[plain].boot.append",
     "unknown key"),
    (("network.domain", "Not A Domain"), "network.domain", "malformed"),
    (("network.deniedEgressCidrs", "203.0.113.0/24"), "network.deniedEgressCidrs",
     "must be a list"),
    (("network.deniedEgressCidrs", ["203.0.113.0/24", "203.0.113.7/24"]),
     "network.deniedEgressCidrs[1]", "not an IPv4 network"),
    (("network.deniedEgressCidrs", ["0.0.0.0/0"]), "network.deniedEgressCidrs[0]",
     "deny all egress"),
    (("kubernetes.podPidsLimit", 10), "kubernetes.podPidsLimit", "out of range"),
    (("kubernetes.podPidsLimit", "many"), "kubernetes.podPidsLimit", "integer"),
    (("tenants", [{"name": "a", "quota": {"secrets": -1}}]), "tenants[a].quota.secrets",
     "out of range"),
    (("tenants", [{"name": "a", "quota": {"configMaps": "ten"}}]),
     "tenants[a].quota.configMaps", "integer"),
    (("tenants", [{"name": "a", "quota": {"services": 1.5}}]), "tenants[a].quota.services",
     "integer"),
    (("tenants", [{"name": "a", "quota": {"persistentVolumeClaims": None}}]),
     "tenants[a].quota.persistentVolumeClaims", "integer"),
    (("tenants", [{"name": "a", "quota": {"nodePorts": 3}}]), "tenants[a].quota.nodePorts",
     "allowNodeServices"),
    (("tenants", [{"name": "a", "quota": {"loadBalancers": 1}}]),
     "tenants[a].quota.loadBalancers", "allowNodeServices"),
    (("tenants", [{"name": "a", "allowNodeServices": True, "quota": {"nodePorts": "x"}}]),
     "tenants[a].quota.nodePorts", "integer"),
    (("tenants", [{"name": "a", "quota": {"ephemeralStorage": "lots"}}]),
     "tenants[a].quota.ephemeralStorage", "not a Kubernetes quantity"),
    (("tenants", [{"name": "a", "limits": {"ephemeralStorage": "1 GB"}}]),
     "tenants[a].limits.ephemeralStorage", "not a Kubernetes quantity"),
    (("tenants", [{"name": "a", "requests": {"ephemeral-storage": "1Gi"}}]),
     "tenants[a].requests.ephemeral-storage", "unknown key"),
]


@pytest.mark.parametrize(("change", "key", "reason"), BAD_CONFIGS,
                         ids=[f"{c[0]}={c[1]!r}"[:60] for c, _, _ in BAD_CONFIGS])
def test_bad_config_is_rejected_naming_its_key(change: tuple[str, Any], key: str,
                                               reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(with_change(*change), "dev")
    matching = [p for p in error.value.problems if p.startswith(f"{key}:")]
    assert matching, error.value.problems
    assert any(reason in p for p in matching), matching


def test_even_control_planes_for_ha_rejected() -> None:
    config = with_change("pools.0.count", 4)
    config["pools"][0].pop("names")
    config["network"]["controlPlaneVip"] = "10.17.0.5"
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    assert any(p.startswith("pools[control-plane].count:") for p in error.value.problems)


def test_ha_requires_a_vip_inside_the_network() -> None:
    config = with_change("pools.0.count", 3)
    config["pools"][0].pop("names")
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    assert any(p.startswith("network.controlPlaneVip:") for p in error.value.problems)
    config["network"]["controlPlaneVip"] = "192.168.1.5"
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    assert any("outside network.cidr" in p for p in error.value.problems)


def test_every_problem_is_reported_at_once() -> None:
    config = with_change("kubernetes.version", "latest")
    config["pools"][1]["runtimes"] = ["firecracker"]
    config["pools"][2]["memoryMiB"] = 512
    config["typo"] = 1
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    keys = {p.split(":")[0] for p in error.value.problems}
    assert {"kubernetes.version", "pools[gvisor].runtimes[0]", "pools[plain].memoryMiB",
            "typo"} <= keys


def test_tenants_need_a_sandbox_pool() -> None:
    config = dev_config()
    config["pools"][1]["runtimes"] = []
    config["tenants"] = [{"name": "tenant-a"}]
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    assert any(p.startswith("tenants:") and "sandboxed" in p for p in error.value.problems)


def test_tenant_quota_accepts_plain_numbers() -> None:
    config = dev_config()
    config["tenants"] = [{"name": "tenant-a", "quota": {"cpu": 3, "memory": "6Gi", "pods": 5}}]
    tenant = load(config, "dev").tenants[0]
    assert {k: tenant.quota[k] for k in ("requests.cpu", "requests.memory", "limits.cpu",
                                         "limits.memory", "pods")} == {
        "requests.cpu": "3", "requests.memory": "6Gi", "limits.cpu": "3",
        "limits.memory": "6Gi", "pods": "5"}


def test_tenant_quota_defaults_close_every_counted_resource() -> None:
    config = dev_config()
    config["tenants"] = [{"name": "tenant-a"}, {"name": "tenant-b", "allowNodeServices": True}]
    closed, exposed = load(config, "dev").tenants
    assert closed.quota == {
        "pods": "20", "requests.cpu": "4", "limits.cpu": "4", "requests.memory": "8Gi",
        "limits.memory": "8Gi", "requests.ephemeral-storage": "10Gi",
        "limits.ephemeral-storage": "10Gi", "count/secrets": "50", "count/configmaps": "50",
        "services": "20", "persistentvolumeclaims": "10", "services.nodeports": "0",
        "services.loadbalancers": "0"}
    assert closed.default_limits["ephemeral-storage"] == "512Mi"
    assert closed.default_requests["ephemeral-storage"] == "64Mi"
    # allowNodeServices lifts the zero; a number caps them
    assert "services.nodeports" not in exposed.quota
    assert "services.loadbalancers" not in exposed.quota
    config["tenants"][1]["quota"] = {"nodePorts": 2, "secrets": 3, "ephemeralStorage": "2Gi"}
    exposed = load(config, "dev").tenants[1]
    assert exposed.quota["services.nodeports"] == "2"
    assert exposed.quota["count/secrets"] == "3"
    assert exposed.quota["limits.ephemeral-storage"] == "2Gi"


def test_network_denied_egress_and_pod_pids_limit() -> None:
    config = dev_config()
    config["network"]["deniedEgressCidrs"] = ["203.0.113.0/24"]
    config["kubernetes"]["podPidsLimit"] = 2048
    spec = load(config, "dev")
    assert [str(n) for n in spec.network.denied_egress] == ["203.0.113.0/24"]
    assert spec.kubernetes.pod_pids_limit == 2048
    assert load(dev_config(), "dev").kubernetes.pod_pids_limit == 1024


def test_empty_config_uses_documented_defaults() -> None:
    spec = load({}, "dev")
    assert [n.name for n in spec.nodes] == ["master", "worker1", "worker2"]
    assert spec.enabled_sandboxes == ("gvisor",)
    assert spec.gvisor.platform == "systrap"
    assert spec.kubernetes.version == "1.34.2"


def test_dev_stack_spec() -> None:
    spec = load(dev_config(), "dev")
    assert spec.control_plane_endpoint == "10.17.0.10:6443"
    ips = {n.name: str(n.ip) for n in spec.nodes}
    assert ips == {"master": "10.17.0.10", "worker1": "10.17.0.11", "worker2": "10.17.0.12"}
    worker1 = next(n for n in spec.nodes if n.name == "worker1")
    assert worker1.handlers == ("runc", "runsc")
    assert worker1.pool.node_labels[sandbox_label("gvisor")] == "true"
    assert [t.key for t in worker1.pool.node_taints] == [SANDBOX_TAINT_KEY]
    worker2 = next(n for n in spec.nodes if n.name == "worker2")
    assert worker2.pool.node_taints == ()
    assert worker2.handlers == ("runc",)


def test_spec_is_frozen() -> None:
    spec = load(dev_config(), "dev")
    with pytest.raises(AttributeError):
        spec.admin_user = "x"  # type: ignore[misc]


def test_macs_are_stable_and_distinct_per_stack() -> None:
    assert node_mac("dev", "worker1") == node_mac("dev", "worker1")
    assert node_mac("dev", "worker1") != node_mac("ha", "worker1")
    assert node_mac("dev", "worker1").startswith("52:54:00:")


def test_node_addresses_skip_gateway_and_stop_at_the_end_of_the_range() -> None:
    config = with_change("network.cidr", "10.17.0.0/29")
    with pytest.raises(ConfigError) as error:
        load(config, "dev")  # hosts .1-.6 only; nodes start at .10
    assert any(p.startswith("network.cidr:") and "no room" in p for p in error.value.problems)


def test_domain_type_and_cpu_mode_defaults() -> None:
    spec = load(dev_config(), "dev")
    assert {(p.domain_type, p.cpu_mode) for p in spec.pools} == {("kvm", "host-passthrough")}
    config = dev_config()
    config["libvirt"]["domainType"] = "qemu"
    config["pools"][2]["domainType"] = "kvm"
    pools = {p.name: p for p in load(config, "dev").pools}
    # Under emulation the guest gets everything qemu can offer, never bare qemu64.
    assert (pools["gvisor"].domain_type, pools["gvisor"].cpu_mode) == ("qemu", "maximum")
    assert (pools["plain"].domain_type, pools["plain"].cpu_mode) == ("kvm", "host-passthrough")
    config["pools"][2]["cpuMode"] = "host-model"
    assert next(p for p in load(config, "dev").pools if p.name == "plain").cpu_mode == \
        "host-model"


@pytest.mark.parametrize("pool_change", [{"domainType": "qemu"}, {"cpuMode": "host-model"}])
def test_kvm_in_the_node_needs_kvm_and_the_host_cpu(pool_change: dict[str, str]) -> None:
    config = with_change("pools.1.runtimes", ["gvisor"])
    config["gvisor"]["platform"] = "kvm"
    config["pools"][1].update(pool_change)
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    key = "domainType" if "domainType" in pool_change else "cpuMode"
    assert any(p.startswith(f"pools[gvisor].{key}:") for p in error.value.problems), \
        error.value.problems


def test_direct_boot_is_inherited_and_overridden_per_pool() -> None:
    config = dev_config()
    config["libvirt"]["boot"] = {"kernel": "/srv/k/vmlinuz", "initrd": "/srv/k/initrd.img",
                                 "cmdline": "root=/dev/vda  rw console=ttyS0"}
    config["pools"][2]["boot"] = {"kernel": "/srv/other/vmlinuz"}
    pools = {p.name: p for p in load(config, "dev").pools}
    boot = pools["gvisor"].boot
    assert boot is not None
    assert (boot.kernel, boot.initrd, boot.cmdline) == (
        "/srv/k/vmlinuz", "/srv/k/initrd.img", "root=/dev/vda rw console=ttyS0")
    assert pools["plain"].boot is not None and pools["plain"].boot.initrd is None
    assert load(dev_config(), "dev").pools[0].boot is None


def test_network_domain_defaults_per_stack() -> None:
    assert load(dev_config(), "dev").network.domain == "dev-sandboxed-k8s.internal"
    assert load(with_change("network.domain", "k8s.example"), "dev").network.domain == \
        "k8s.example"


@pytest.mark.parametrize(("platform", "gvisor_pool_needs_kvm"), [("systrap", False),
                                                                 ("kvm", True)])
def test_kvm_is_needed_by_kata_and_by_runsc_on_the_kvm_platform(
        platform: str, gvisor_pool_needs_kvm: bool) -> None:
    spec = load(with_change("gvisor.platform", platform), "dev")
    pools = {p.name: p for p in spec.pools}
    assert spec.needs_kvm(pools["gvisor"]) is gvisor_pool_needs_kvm
    assert not spec.needs_kvm(pools["plain"])
    kata = load(with_change("pools.1.runtimes", ["kata"]), "dev")
    assert kata.needs_kvm(next(p for p in kata.pools if p.name == "gvisor"))
