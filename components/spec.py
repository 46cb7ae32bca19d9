"""Stack configuration validated into typed, frozen objects.

Everything the program reads from `pulumi.Config` passes through `load()`: every problem is
collected (each naming its key path and what is allowed) and raised together, before a single
resource is registered. No Pulumi imports here, so the rules are testable as plain Python.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PROJECT = "sandboxed-k8s"

# One place defines each name the scheduler relies on: the join config (labels, taints), the
# RuntimeClasses (nodeSelector, tolerations) and the tests all import these.
SANDBOX_LABEL_PREFIX = "runtime.sandboxed-k8s.io/"
SANDBOX_TAINT_KEY = "sandboxed-k8s.io/sandbox"
SANDBOX_TAINT_VALUE = "true"
SANDBOX_TAINT_EFFECT = "NoSchedule"
POOL_LABEL = "sandboxed-k8s.io/pool"
TENANT_LABEL = "sandboxed-k8s.io/tenant"  # on tenant namespaces; the admission binding selects it
RESERVED_LABEL_DOMAINS = ("sandboxed-k8s.io",)

# Sandbox runtime name -> containerd handler name (= RuntimeClass handler, immutable upstream).
SANDBOX_HANDLERS: Mapping[str, str] = {"gvisor": "runsc", "kata": "kata"}
RUNSC_PLATFORMS = ("systrap", "kvm", "ptrace")
# runsc flags a stack may set. Anything that widens the sandbox (host networking, flag
# overrides from pod annotations, raw sockets) is deliberately absent: gVisor's threat model
# leaves runtime flags to the deployer, so we do not expose them.
RUNSC_FLAG_ALLOWLIST = ("debug", "debug-log", "strace", "overlay2", "directfs", "file-access",
                        "watchdog-action")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
NETWORK_MODES = ("nat", "bridge")
# libvirt domain types: `kvm` needs /dev/kvm on the hypervisor host; `qemu` is software
# emulation (hosts without KVM, nested setups without nested virtualisation), much slower.
DOMAIN_TYPES = ("kvm", "qemu")
# CPU modes offered to pools. Without one, libvirt gives the guest `qemu64`, which lacks
# features such as AES-NI. `host-passthrough` exposes the host CPU (KVM only, and the only mode
# that carries the virtualisation extensions nested KVM needs); `host-model` a migratable copy
# of it (KVM only); `maximum` everything the hypervisor can offer (the sensible choice under
# qemu emulation).
CPU_MODES = ("host-passthrough", "host-model", "maximum")
DEFAULT_CPU_MODE = {"kvm": "host-passthrough", "qemu": "maximum"}
ROLES = ("control-plane", "worker")
KUBEADM_MIN_MEMORY_MIB = 1700
KUBEADM_MIN_CPUS_CONTROL_PLANE = 2
DEFAULT_LIBVIRT_URI = "qemu:///system"


class ConfigError(ValueError):
    """Every problem found in the stack configuration, one per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in self.problems)
        )


# ---------------------------------------------------------------------------------------------
# Typed spec
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """A pinned download: version, checksum and the base URL it is fetched from."""

    version: str
    checksum: str  # "<algorithm>:<hex>", verified on the node before anything is installed
    base_url: str


@dataclass(frozen=True)
class KubernetesSpec:
    version: str
    pod_cidr: ipaddress.IPv4Network
    service_cidr: ipaddress.IPv4Network
    cluster_name: str
    kubeadm: Artifact
    kubelet: Artifact
    kubectl: Artifact
    token_ttl: str

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


@dataclass(frozen=True)
class GvisorSpec:
    release: str  # dated release, YYYYMMDD or YYYYMMDD.N
    base_url: str
    layout: str  # "archive" (gvisor.tar.bz2) or "binaries" (runsc + shim as separate files)
    checksums: Mapping[str, str]  # file name -> sha512 hex; empty: trust the release's .sha512
    platform: str
    flags: Mapping[str, str]
    overhead_cpu: str
    overhead_memory: str


@dataclass(frozen=True)
class KataSpec:
    artifact: Artifact
    overhead_cpu: str
    overhead_memory: str


@dataclass(frozen=True)
class CniSpec:
    flannel_version: str
    flannel_cni_plugin_version: str
    image_registry: str
    network_policy_image: str


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    mode: str
    cidr: ipaddress.IPv4Network
    domain: str  # DNS domain the NAT network's dnsmasq answers for itself (localOnly)
    bridge: str | None
    gateway: ipaddress.IPv4Address
    dns: tuple[ipaddress.IPv4Address, ...]
    control_plane_vip: ipaddress.IPv4Address | None
    first_node_host: int


@dataclass(frozen=True)
class TenantSpec:
    """A tenant namespace: sandboxed pods only, default-deny network, quota and limits."""

    name: str
    quota: Mapping[str, str]  # ResourceQuota hard limits: requests.cpu, requests.memory, pods
    default_limits: Mapping[str, str]  # LimitRange default (limits) for containers
    default_requests: Mapping[str, str]  # LimitRange defaultRequest for containers
    # NodePort and LoadBalancer Services take ports on every node (a shared, exhaustible range)
    # and open the tenant to the outside: off unless the stack allows them for this tenant.
    allow_node_services: bool = False


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class DirectBoot:
    """Direct kernel boot: libvirt starts the kernel itself (paths on the hypervisor host), for
    base images without a bootloader."""

    kernel: str
    initrd: str | None
    cmdline: str


@dataclass(frozen=True)
class PoolSpec:
    name: str
    role: str
    count: int
    cpu: int
    memory_mib: int
    disk_gib: int
    runtimes: tuple[str, ...]  # sandbox runtimes; runc is always installed
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    libvirt_uri: str
    node_names: tuple[str, ...]
    base_image: str
    domain_type: str = "kvm"
    cpu_mode: str = "host-passthrough"
    boot: DirectBoot | None = None

    @property
    def is_control_plane(self) -> bool:
        return self.role == "control-plane"

    @property
    def node_labels(self) -> dict[str, str]:
        """User labels plus the pool label and one label per sandbox runtime."""
        labels = dict(self.labels)
        labels[POOL_LABEL] = self.name
        for runtime in self.runtimes:
            labels[sandbox_label(runtime)] = "true"
        return labels

    @property
    def node_taints(self) -> tuple[Taint, ...]:
        """User taints plus the sandbox taint on pools that run sandboxes (none on plain pools)."""
        if self.runtimes:
            return (*self.taints, Taint(SANDBOX_TAINT_KEY, SANDBOX_TAINT_VALUE,
                                        SANDBOX_TAINT_EFFECT))
        return self.taints


@dataclass(frozen=True)
class NodeSpec:
    name: str
    pool: PoolSpec
    ip: ipaddress.IPv4Address
    mac: str

    @property
    def handlers(self) -> tuple[str, ...]:
        return ("runc", *(SANDBOX_HANDLERS[r] for r in self.pool.runtimes))


@dataclass(frozen=True)
class ClusterSpec:
    stack: str
    admin_user: str
    storage_pool: str
    network: NetworkSpec
    kubernetes: KubernetesSpec
    containerd: Artifact
    runc: Artifact
    cni_plugins: Artifact
    crictl: Artifact
    cni: CniSpec
    gvisor: GvisorSpec
    kata: KataSpec
    kube_vip_version: str
    pools: tuple[PoolSpec, ...]
    nodes: tuple[NodeSpec, ...] = field(default=())
    tenants: tuple[TenantSpec, ...] = field(default=())

    @property
    def control_plane_pool(self) -> PoolSpec:
        return next(p for p in self.pools if p.is_control_plane)

    @property
    def control_plane_nodes(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.pool.is_control_plane)

    @property
    def worker_nodes(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if not n.pool.is_control_plane)

    @property
    def ha(self) -> bool:
        return self.control_plane_pool.count > 1

    @property
    def control_plane_endpoint(self) -> str:
        host = self.network.control_plane_vip if self.ha else self.control_plane_nodes[0].ip
        return f"{host}:6443"

    @property
    def enabled_sandboxes(self) -> tuple[str, ...]:
        enabled = {r for p in self.pools for r in p.runtimes}
        return tuple(r for r in SANDBOX_HANDLERS if r in enabled)

    @property
    def libvirt_uris(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.libvirt_uri for p in self.pools))

    def pools_with(self, runtime: str) -> tuple[PoolSpec, ...]:
        return tuple(p for p in self.pools if runtime in p.runtimes)

    def needs_kvm(self, pool: PoolSpec) -> bool:
        """Kata starts a VM per pod, and runsc's kvm platform uses KVM directly: either needs
        /dev/kvm inside the node VM."""
        return "kata" in pool.runtimes or (
            "gvisor" in pool.runtimes and self.gvisor.platform == "kvm")


def sandbox_label(runtime: str) -> str:
    return f"{SANDBOX_LABEL_PREFIX}{runtime}"


# ---------------------------------------------------------------------------------------------
# Defaults (documented in the README's configuration reference)
# ---------------------------------------------------------------------------------------------

DEFAULT_BASE_IMAGE = (
    "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
)

DEFAULTS: dict[str, Any] = {
    "adminUser": "k8sadmin",
    "libvirt": {"uri": DEFAULT_LIBVIRT_URI, "storagePool": "default",
                "baseImage": DEFAULT_BASE_IMAGE, "domainType": "kvm", "cpuMode": None,
                "boot": None},
    "network": {"name": "sandboxed-k8s", "mode": "nat", "cidr": "10.17.0.0/24", "domain": None,
                "bridge": None, "gateway": None, "dns": None, "controlPlaneVip": None,
                "firstNodeHost": 10},
    "kubernetes": {
        "version": "1.34.2",
        "podCidr": "10.244.0.0/16",
        "serviceCidr": "10.96.0.0/12",
        "clusterName": "sandboxed-k8s",
        "tokenTtl": "30m",
        "baseUrl": "https://dl.k8s.io/release",
        "kubeadmSha256": "6a2346006132f6e1ed0b5248e518098cf5abbce25bf11b8926fb1073091b83f4",
        "kubeletSha256": "9c5e717b774ee9b9285ce47e7d2150c29e84837eb19a7eaa24b60b1543c9d58f",
        "kubectlSha256": "9591f3d75e1581f3f7392e6ad119aab2f28ae7d6c6e083dc5d22469667f27253",
    },
    "containerd": {"version": "2.1.5",
                   "sha256": "403af72d9f956ed8a5ad5b0ac0f1e8e371a1488f2b9edf9b4ba13db0653936ea",
                   "baseUrl": "https://github.com/containerd/containerd/releases/download"},
    "runc": {"version": "1.3.4",
             "sha256": "5966ca40b6187b30e33bfc299c5f1fe72e8c1aa01cf3fefdadf391668f47f103",
             "baseUrl": "https://github.com/opencontainers/runc/releases/download"},
    "cniPlugins": {"version": "1.8.0",
                   "sha256": "ab3bda535f9d90766cccc90d3dddb5482003dd744d7f22bcf98186bf8eea8be6",
                   "baseUrl": "https://github.com/containernetworking/plugins/releases/download"},
    "crictl": {"version": "1.34.0",
               "sha256": "a8ff2a3edb37a98daf3aba7c3b284fe0aa5bff24166d896ab9ef64c8913c9f51",
               "baseUrl": "https://github.com/kubernetes-sigs/cri-tools/releases/download"},
    "cni": {"flannelVersion": "v0.26.7", "flannelCniPluginVersion": "v1.7.1-flannel1",
            "imageRegistry": "docker.io/flannel",
            "networkPolicyImage": "registry.k8s.io/networking/kube-network-policies:v0.7.0"},
    "gvisor": {"release": "20251118.0", "layout": "binaries",
               "runscSha512": "cc95eec3e22a574ac533278ee8c72672542edf0ab467a89c13f02abea6404ffe"
                              "20ea4a538a3482b072a8e45222a13cefbf9e7f44bada35b436769e04b12ab970",
               "shimSha512": "b0f0fa1ee431c63cfbb9007a62c49a374bcbfbbbf5997e63c827d1673f6933d6"
                             "5044ca4f06608bb494f870ced97295dc065810f5e905dfd4a632fe4d61faff7f",
               "baseUrl": "https://storage.googleapis.com/gvisor/releases/release",
               "platform": "systrap", "flags": {},
               "overhead": {"cpu": "100m", "memory": "64Mi"}},
    "kata": {"version": "3.7.0",
             "sha256": "bebf218cafdc082476c7dabbcc5439aee6a41d6dda24dd3cfffbe0a6ae94e23d",
             "baseUrl": "https://github.com/kata-containers/kata-containers/releases/download",
             "overhead": {"cpu": "250m", "memory": "320Mi"}},
    "kubeVip": {"version": "v0.9.2"},
    "tenants": [],
    # The classic topology: master + worker1 (gVisor) + worker2 (plain runc).
    "pools": [
        {"name": "control-plane", "role": "control-plane", "names": ["master"]},
        {"name": "gvisor", "role": "worker", "names": ["worker1"], "runtimes": ["gvisor"]},
        {"name": "plain", "role": "worker", "names": ["worker2"]},
    ],
}

POOL_DEFAULTS: dict[str, Any] = {
    "role": "worker", "count": 1, "cpu": 2, "memoryMiB": 4096, "diskGiB": 20, "runtimes": [],
    "labels": {}, "taints": [], "libvirtUri": None, "names": None, "baseImage": None,
    "domainType": None, "cpuMode": None, "boot": None,
}
BOOT_DEFAULTS: dict[str, Any] = {"kernel": None, "initrd": None, "cmdline": ""}
TAINT_KEYS = ("key", "value", "effect")
TENANT_DEFAULTS: dict[str, Any] = {
    "name": None,
    "quota": {"cpu": "4", "memory": "8Gi", "pods": 20},
    "limits": {"cpu": "500m", "memory": "512Mi"},
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "allowNodeServices": False,
}
# Namespaces that must never become tenants: the cluster's own and Kubernetes' reserved ones.
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease",
                       "kube-flannel", "sandbox-proof")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_CONTAINERD_SUPPORTED = re.compile(r"^(1\.[67]|2\.\d+)\.\d+$")
_GVISOR_RELEASE = re.compile(r"^\d{8}(\.\d+)?$")
_PINNED_IMAGE = re.compile(r"^[a-z0-9.\-/]+(:v\d+\.\d+\.\d+\S*|@sha256:[0-9a-f]{64})$")
_IMAGE_TAG = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|k|M|G)?$")
_HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "sha512": re.compile(r"^[0-9a-f]{128}$")}
_TTL = re.compile(r"^\d+[smh]$")
_URL = re.compile(r"^(https?|file)://\S+$")
_ABSOLUTE_PATH = re.compile(r"^/\S*$")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
                       r"(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
_LIBVIRT_URI = re.compile(r"^qemu(\+[a-z]+)?://[^\s]*/(system|session)(\?\S*)?$")


class _Collector:
    """Reads a config mapping and records each problem under its key path."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def section(self, raw: Any, path: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """A mapping merged over its defaults; unknown keys are errors (typos must not pass)."""
        if raw is None:
            return dict(defaults)
        if not isinstance(raw, Mapping):
            self.error(path, f"must be an object with keys {sorted(defaults)}")
            return dict(defaults)
        for key in raw:
            if key not in defaults:
                self.error(f"{path}.{key}" if path else str(key),
                           f"unknown key; allowed: {', '.join(sorted(defaults))}")
        return {**defaults, **{k: v for k, v in raw.items() if k in defaults}}

    def string(self, value: Any, path: str, pattern: re.Pattern[str] | None = None,
               allowed: str = "") -> str:
        if not isinstance(value, str) or not value:
            self.error(path, f"must be a non-empty string{'; ' + allowed if allowed else ''}")
            return ""
        if pattern is not None and not pattern.match(value):
            self.error(path, f"{value!r} is malformed; expected {allowed}")
        return value

    def choice(self, value: Any, path: str, choices: Sequence[str]) -> str:
        if value not in choices:
            self.error(path, f"{value!r} is not allowed; choose one of {', '.join(choices)}")
            return choices[0]
        return str(value)

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.error(path, f"{value!r} must be true or false")
            return False
        return value

    def integer(self, value: Any, path: str, minimum: int, maximum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be an integer between {minimum} and {maximum}")
            return minimum
        if not minimum <= value <= maximum:
            self.error(path, f"{value} is out of range; allowed {minimum}..{maximum}")
        return value

    def network(self, value: Any, path: str) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(str(value), strict=True)
        except ValueError:
            self.error(path, f"{value!r} is not an IPv4 network in CIDR form (e.g. 10.17.0.0/24)")
            return ipaddress.IPv4Network("0.0.0.0/32")

    def address(self, value: Any, path: str) -> ipaddress.IPv4Address | None:
        try:
            return ipaddress.IPv4Address(str(value))
        except ValueError:
            self.error(path, f"{value!r} is not an IPv4 address")
            return None

    def checksum(self, value: Any, path: str, algorithm: str) -> str:
        if not isinstance(value, str) or not _HEX[algorithm].match(value):
            length = {"sha256": 64, "sha512": 128}[algorithm]
            self.error(path, f"must be the artifact's {algorithm}: {length} lowercase hex "
                             "characters")
            return ""
        return value

    def artifact(self, raw: Mapping[str, Any], path: str, version_key: str = "version",
                 checksum_key: str = "sha256",
                 version_pattern: re.Pattern[str] = _VERSION) -> Artifact:
        version = self.string(raw[version_key], f"{path}.{version_key}", version_pattern,
                              f"a pinned version matching {version_pattern.pattern}")
        digest = self.checksum(raw[checksum_key], f"{path}.{checksum_key}", "sha256")
        base_url = self.string(raw["baseUrl"], f"{path}.baseUrl", _URL, "an http(s):// URL")
        return Artifact(version, f"sha256:{digest}", base_url.rstrip("/"))

    def quantity(self, value: Any, path: str) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `cpu: 4` in YAML is as good as `cpu: "4"`
        if not isinstance(value, str) or not _QUANTITY.match(value):
            self.error(path, f"{value!r} is not a Kubernetes quantity (e.g. 250m, 128Mi)")
            return "0"
        return value


def _label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return bool(name) and len(name) <= 63 and bool(_LABEL_NAME.match(name)) and (
        not prefix or bool(_LABEL_PREFIX.match(prefix)))


def _is_reserved(key: str) -> bool:
    prefix = key.rpartition("/")[0]
    return any(prefix == d or prefix.endswith("." + d) for d in RESERVED_LABEL_DOMAINS)


def node_mac(stack: str, node_name: str) -> str:
    """A stable locally administered MAC (QEMU's 52:54:00 prefix) per stack and node."""
    digest = hashlib.sha256(f"{stack}/{node_name}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _pools(c: _Collector, raw: Any, libvirt: Mapping[str, Any],
           machine: _MachineDefaults) -> list[PoolSpec]:
    if not isinstance(raw, list) or not raw:
        c.error("pools", "must be a non-empty list of pool objects")
        return []
    pools: list[PoolSpec] = []
    for i, raw_pool in enumerate(raw):
        path = f"pools[{i}]"
        p = c.section(raw_pool, path, {"name": None, **POOL_DEFAULTS})
        name = c.string(p["name"], f"{path}.name", _DNS_LABEL,
                        "a DNS label: lowercase letters, digits and '-'")
        path = f"pools[{name or i}]"
        role = c.choice(p["role"], f"{path}.role", ROLES)
        count = c.integer(p["count"], f"{path}.count", 1 if role == "control-plane" else 0, 50)
        cpu = c.integer(p["cpu"], f"{path}.cpu", 1, 64)
        if role == "control-plane" and isinstance(cpu, int) and cpu < 2:
            c.error(f"{path}.cpu", f"kubeadm needs at least {KUBEADM_MIN_CPUS_CONTROL_PLANE} "
                                   "vCPUs on a control-plane node")
        memory = c.integer(p["memoryMiB"], f"{path}.memoryMiB", 1, 1024 * 1024)
        if isinstance(memory, int) and 0 < memory < KUBEADM_MIN_MEMORY_MIB:
            c.error(f"{path}.memoryMiB", f"{memory} MiB is under kubeadm's minimum of "
                                         f"{KUBEADM_MIN_MEMORY_MIB} MiB")
        disk = c.integer(p["diskGiB"], f"{path}.diskGiB", 10, 4096)
        runtimes: list[str] = []
        if not isinstance(p["runtimes"], list):
            c.error(f"{path}.runtimes", f"must be a list of: {', '.join(SANDBOX_HANDLERS)}")
        else:
            for j, r in enumerate(p["runtimes"]):
                if r == "runc":
                    c.error(f"{path}.runtimes[{j}]", "runc is always installed; list only "
                                                     f"sandboxes: {', '.join(SANDBOX_HANDLERS)}")
                elif r not in SANDBOX_HANDLERS:
                    c.error(f"{path}.runtimes[{j}]", f"unknown runtime {r!r}; allowed: "
                                                     f"{', '.join(SANDBOX_HANDLERS)}")
                elif r in runtimes:
                    c.error(f"{path}.runtimes[{j}]", f"{r!r} is listed twice")
                else:
                    runtimes.append(r)
        if runtimes and role == "control-plane":
            c.error(f"{path}.runtimes", "sandbox runtimes run on worker pools only; tenants "
                                        "must stay off the control plane")
        labels: dict[str, str] = {}
        if not isinstance(p["labels"], Mapping):
            c.error(f"{path}.labels", "must be a map of label key to string value")
        else:
            for k, v in p["labels"].items():
                if not _label_key_ok(str(k)):
                    c.error(f"{path}.labels.{k}", "is not a valid Kubernetes label key")
                elif _is_reserved(str(k)):
                    c.error(f"{path}.labels.{k}", "uses the reserved sandboxed-k8s.io domain; "
                                                  "sandbox labels are set from `runtimes`")
                elif not isinstance(v, str) or not _LABEL_NAME.match(v) or len(v) > 63:
                    c.error(f"{path}.labels.{k}", f"value {v!r} is not a valid label value")
                else:
                    labels[str(k)] = v
        taints: list[Taint] = []
        if not isinstance(p["taints"], list):
            c.error(f"{path}.taints", "must be a list of {key, value, effect}")
        else:
            for j, raw_taint in enumerate(p["taints"]):
                tpath = f"{path}.taints[{j}]"
                t = c.section(raw_taint, tpath, dict.fromkeys(TAINT_KEYS, ""))
                key = str(t["key"])
                if not _label_key_ok(key) or not key:
                    c.error(f"{tpath}.key", f"{key!r} is not a valid taint key")
                elif _is_reserved(key):
                    c.error(f"{tpath}.key", "uses the reserved sandboxed-k8s.io domain; the "
                                            "sandbox taint is set from `runtimes`")
                effect = c.choice(t["effect"], f"{tpath}.effect", TAINT_EFFECTS)
                taints.append(Taint(key, str(t["value"]), effect))
        uri = p["libvirtUri"] if p["libvirtUri"] is not None else libvirt["uri"]
        uri = c.string(uri, f"{path}.libvirtUri", _LIBVIRT_URI,
                       "a libvirt URI such as qemu:///system or qemu+ssh://user@host/system")
        base_image = p["baseImage"] if p["baseImage"] is not None else libvirt["baseImage"]
        base_image = c.string(base_image, f"{path}.baseImage", None, "an image URL or path")
        domain_type, cpu_mode, boot = _machine(c, p, machine, path)
        names: tuple[str, ...]
        if p["names"] is None:
            names = tuple(f"{name}-{n + 1}" for n in range(count if isinstance(count, int) else 0))
        elif not isinstance(p["names"], list) or len(p["names"]) != count:
            c.error(f"{path}.names", f"must list exactly `count` ({count}) node names")
            names = ()
        else:
            names = tuple(c.string(n, f"{path}.names[{j}]", _DNS_LABEL, "a DNS label")
                          for j, n in enumerate(p["names"]))
        pools.append(PoolSpec(name, role, count, cpu, memory, disk, tuple(runtimes), labels,
                              tuple(taints), uri, names, base_image, domain_type, cpu_mode,
                              boot))
    return pools


@dataclass(frozen=True)
class _MachineDefaults:
    """libvirt's pool-wide defaults, validated once."""

    domain_type: str
    cpu_mode: str | None
    boot: DirectBoot | None


def _machine(c: _Collector, p: Mapping[str, Any], defaults: _MachineDefaults,
             path: str) -> tuple[str, str, DirectBoot | None]:
    """The pool's domain type, CPU mode and direct boot: its own keys, else libvirt's."""
    domain_type = (c.choice(p["domainType"], f"{path}.domainType", DOMAIN_TYPES)
                   if p["domainType"] is not None else defaults.domain_type)
    if p["cpuMode"] is not None:
        cpu_mode, mode_path = c.choice(p["cpuMode"], f"{path}.cpuMode", CPU_MODES), \
            f"{path}.cpuMode"
    elif defaults.cpu_mode is not None:
        cpu_mode, mode_path = defaults.cpu_mode, "libvirt.cpuMode"
    else:
        cpu_mode, mode_path = DEFAULT_CPU_MODE[domain_type], ""
    if domain_type == "qemu" and cpu_mode in ("host-passthrough", "host-model"):
        c.error(mode_path, f"{cpu_mode} needs KVM; pool {p['name']!r} has domainType qemu: "
                           "use maximum")
    boot = _boot(c, p["boot"], f"{path}.boot") if p["boot"] is not None else defaults.boot
    return domain_type, cpu_mode, boot


def _boot(c: _Collector, raw: Any, path: str) -> DirectBoot | None:
    if raw is None:
        return None
    b = c.section(raw, path, BOOT_DEFAULTS)
    kernel = c.string(b["kernel"], f"{path}.kernel", _ABSOLUTE_PATH,
                      "an absolute path on the hypervisor host")
    initrd = None
    if b["initrd"] is not None:
        initrd = c.string(b["initrd"], f"{path}.initrd", _ABSOLUTE_PATH,
                          "an absolute path on the hypervisor host")
    cmdline = b["cmdline"]
    if not isinstance(cmdline, str):
        c.error(f"{path}.cmdline", "must be a string of kernel arguments, e.g. "
                                   "'root=/dev/vda rw console=ttyS0'")
        cmdline = ""
    return DirectBoot(kernel, initrd, " ".join(cmdline.split()))


def _tenants(c: _Collector, raw: Any) -> list[TenantSpec]:
    if not isinstance(raw, list):
        c.error("tenants", "must be a list of tenant objects")
        return []
    tenants: list[TenantSpec] = []
    for i, raw_tenant in enumerate(raw):
        t = c.section(raw_tenant, f"tenants[{i}]", TENANT_DEFAULTS)
        name = c.string(t["name"], f"tenants[{i}].name", _DNS_LABEL,
                        "a DNS label: lowercase letters, digits and '-'")
        path = f"tenants[{name or i}]"
        if name in RESERVED_NAMESPACES or name.startswith("kube-") or \
                name.startswith("sandboxed-k8s"):
            c.error(f"{path}.name", f"{name!r} is reserved for the cluster itself")
        if name in {x.name for x in tenants}:
            c.error(f"{path}.name", "duplicate tenant name")
        quota = c.section(t["quota"], f"{path}.quota", TENANT_DEFAULTS["quota"])
        limits = c.section(t["limits"], f"{path}.limits", TENANT_DEFAULTS["limits"])
        requests = c.section(t["requests"], f"{path}.requests", TENANT_DEFAULTS["requests"])
        pods = c.integer(quota["pods"], f"{path}.quota.pods", 1, 10000)
        cpu = c.quantity(quota["cpu"], f"{path}.quota.cpu")
        memory = c.quantity(quota["memory"], f"{path}.quota.memory")
        tenants.append(TenantSpec(
            name=name,
            quota={"requests.cpu": cpu, "requests.memory": memory, "limits.cpu": cpu,
                   "limits.memory": memory, "pods": str(pods)},
            default_limits={k: c.quantity(v, f"{path}.limits.{k}") for k, v in limits.items()},
            default_requests={k: c.quantity(v, f"{path}.requests.{k}")
                              for k, v in requests.items()},
            allow_node_services=c.boolean(t["allowNodeServices"], f"{path}.allowNodeServices"),
        ))
    return tenants


def load(raw: Mapping[str, Any], stack: str) -> ClusterSpec:
    """Validate the project's config (keys without the project prefix) into a ClusterSpec."""
    c = _Collector()
    top = c.section(raw, "", DEFAULTS)

    admin_user = c.string(top["adminUser"], "adminUser", re.compile(r"^[a-z_][a-z0-9_-]{0,31}$"),
                          "a Linux user name")
    if admin_user == "root":
        c.error("adminUser", "must not be root")
    libvirt = c.section(top["libvirt"], "libvirt", DEFAULTS["libvirt"])
    c.string(libvirt["uri"], "libvirt.uri", _LIBVIRT_URI, "a libvirt URI such as qemu:///system")
    storage_pool = c.string(libvirt["storagePool"], "libvirt.storagePool")

    net = c.section(top["network"], "network", DEFAULTS["network"])
    mode = c.choice(net["mode"], "network.mode", NETWORK_MODES)
    cidr = c.network(net["cidr"], "network.cidr")
    hosts = list(cidr.hosts())
    if mode == "bridge" and not net["bridge"]:
        c.error("network.bridge", "is required when network.mode is bridge (an existing host "
                                  "bridge, e.g. br0)")
    gateway = c.address(net["gateway"], "network.gateway") if net["gateway"] else (
        hosts[0] if hosts else None)
    if gateway is not None and hosts and gateway not in cidr:
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
    network_name = c.string(net["name"], "network.name", _DNS_LABEL, "a DNS label")
    dns_domain = net["domain"] if net["domain"] is not None else f"{stack}-{network_name}.internal"
    dns_domain = c.string(dns_domain, "network.domain", _DNS_NAME,
                          "a DNS name such as k8s.internal")

    k8s = c.section(top["kubernetes"], "kubernetes", DEFAULTS["kubernetes"])
    k8s_version = c.string(k8s["version"], "kubernetes.version", _VERSION,
                           "a pinned version like 1.34.2 (no 'v', no 'latest')")
    k8s_base = c.string(k8s["baseUrl"], "kubernetes.baseUrl", _URL, "an http(s):// URL")
    k8s_artifacts = {
        b: Artifact(k8s_version,
                    f"sha256:{c.checksum(k8s[f'{b}Sha256'], f'kubernetes.{b}Sha256', 'sha256')}",
                    k8s_base.rstrip("/"))
        for b in ("kubeadm", "kubelet", "kubectl")
    }
    pod_cidr = c.network(k8s["podCidr"], "kubernetes.podCidr")
    service_cidr = c.network(k8s["serviceCidr"], "kubernetes.serviceCidr")
    named = {"network.cidr": cidr, "kubernetes.podCidr": pod_cidr,
             "kubernetes.serviceCidr": service_cidr}
    items = list(named.items())
    for i, (a_key, a_net) in enumerate(items):
        for b_key, b_net in items[i + 1:]:
            if a_net.prefixlen and b_net.prefixlen and a_net.overlaps(b_net):
                c.error(b_key, f"{b_net} overlaps {a_key} {a_net}; the three ranges must be "
                               "disjoint")
    cluster_name = c.string(k8s["clusterName"], "kubernetes.clusterName", _DNS_LABEL,
                            "a DNS label")
    token_ttl = c.string(k8s["tokenTtl"], "kubernetes.tokenTtl", _TTL,
                         "a duration like 30m or 2h")

    containerd_raw = c.section(top["containerd"], "containerd", DEFAULTS["containerd"])
    containerd = c.artifact(containerd_raw, "containerd")
    if _VERSION.match(containerd.version) and not _CONTAINERD_SUPPORTED.match(containerd.version):
        c.error("containerd.version", f"{containerd.version} is not supported; use 1.6.x, 1.7.x "
                                      "or 2.x")
    runc = c.artifact(c.section(top["runc"], "runc", DEFAULTS["runc"]), "runc")
    runsc_on_16 = containerd.version.startswith("1.6.")
    cni_plugins = c.artifact(c.section(top["cniPlugins"], "cniPlugins", DEFAULTS["cniPlugins"]),
                             "cniPlugins")
    crictl = c.artifact(c.section(top["crictl"], "crictl", DEFAULTS["crictl"]), "crictl")
    cni_raw = c.section(top["cni"], "cni", DEFAULTS["cni"])
    cni = CniSpec(
        c.string(cni_raw["flannelVersion"], "cni.flannelVersion", _IMAGE_TAG, "a tag like v0.27.4"),
        c.string(cni_raw["flannelCniPluginVersion"], "cni.flannelCniPluginVersion", _IMAGE_TAG,
                 "a tag like v1.8.0-flannel1"),
        c.string(cni_raw["imageRegistry"], "cni.imageRegistry").rstrip("/"),
        c.string(cni_raw["networkPolicyImage"], "cni.networkPolicyImage", _PINNED_IMAGE,
                 "an image pinned by tag or digest, e.g. registry/name:v1.2.3"),
    )

    g = c.section(top["gvisor"], "gvisor", DEFAULTS["gvisor"])
    g_over = c.section(g["overhead"], "gvisor.overhead", DEFAULTS["gvisor"]["overhead"])
    flags: dict[str, str] = {}
    if not isinstance(g["flags"], Mapping):
        c.error("gvisor.flags", f"must be a map; allowed keys: {', '.join(RUNSC_FLAG_ALLOWLIST)}")
    else:
        for k, v in g["flags"].items():
            if k not in RUNSC_FLAG_ALLOWLIST:
                c.error(f"gvisor.flags.{k}", "is not an allowed runsc flag; allowed: "
                                             f"{', '.join(RUNSC_FLAG_ALLOWLIST)}")
            elif not isinstance(v, str | bool | int):
                c.error(f"gvisor.flags.{k}", "must be a string, number or boolean")
            else:
                flags[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    layout = c.choice(g["layout"], "gvisor.layout", ("binaries", "archive"))
    gvisor_checksums: dict[str, str] = {}
    if layout == "binaries":
        gvisor_checksums = {
            "runsc": c.checksum(g["runscSha512"], "gvisor.runscSha512", "sha512"),
            "containerd-shim-runsc-v1": c.checksum(g["shimSha512"], "gvisor.shimSha512",
                                                   "sha512"),
        }
    elif g["runscSha512"] or g["shimSha512"]:
        c.error("gvisor.runscSha512", "applies to layout binaries only; the archive layout is "
                                      "verified against its published .sha512")
    gvisor = GvisorSpec(
        release=c.string(g["release"], "gvisor.release", _GVISOR_RELEASE,
                         "a dated release like 20251110 or 20251110.0 (never 'latest')"),
        base_url=c.string(g["baseUrl"], "gvisor.baseUrl", _URL, "an http(s):// URL").rstrip("/"),
        layout=layout,
        checksums=gvisor_checksums,
        platform=c.choice(g["platform"], "gvisor.platform", RUNSC_PLATFORMS),
        flags=flags,
        overhead_cpu=c.quantity(g_over["cpu"], "gvisor.overhead.cpu"),
        overhead_memory=c.quantity(g_over["memory"], "gvisor.overhead.memory"),
    )

    machine = _MachineDefaults(
        c.choice(libvirt["domainType"], "libvirt.domainType", DOMAIN_TYPES),
        (c.choice(libvirt["cpuMode"], "libvirt.cpuMode", CPU_MODES)
         if libvirt["cpuMode"] is not None else None),
        _boot(c, libvirt["boot"], "libvirt.boot"),
    )
    pools = _pools(c, top["pools"], libvirt, machine)
    k = c.section(top["kata"], "kata", DEFAULTS["kata"])
    k_over = c.section(k["overhead"], "kata.overhead", DEFAULTS["kata"]["overhead"])
    kata_used = any("kata" in p.runtimes for p in pools)
    kata_artifact = (c.artifact(k, "kata") if kata_used
                     else Artifact(str(k["version"]), f"sha256:{k['sha256']}", str(k["baseUrl"])))
    kata = KataSpec(kata_artifact, c.quantity(k_over["cpu"], "kata.overhead.cpu"),
                    c.quantity(k_over["memory"], "kata.overhead.memory"))
    kube_vip_raw = c.section(top["kubeVip"], "kubeVip", DEFAULTS["kubeVip"])
    kube_vip_version = c.string(kube_vip_raw["version"], "kubeVip.version", _IMAGE_TAG,
                                "a tag like v0.9.2")

    for p in pools:
        needs = ("kata" in p.runtimes or ("gvisor" in p.runtimes and gvisor.platform == "kvm"))
        if needs and p.domain_type != "kvm":
            c.error(f"pools[{p.name}].domainType", "Kata (and gVisor's kvm platform) need KVM "
                                                   "inside the node: use domainType kvm on a "
                                                   "host with nested virtualisation")
        elif needs and p.cpu_mode != "host-passthrough":
            c.error(f"pools[{p.name}].cpuMode", "Kata (and gVisor's kvm platform) need the "
                                                "host's virtualisation extensions: use "
                                                "host-passthrough")
    if runsc_on_16 and any("gvisor" in p.runtimes for p in pools):
        c.error("containerd.version", "gVisor's containerd shim needs containerd 1.7 or newer "
                                      "(1.6 cannot read its task API replies)")
    tenants = _tenants(c, top["tenants"])
    if tenants and not any(p.runtimes for p in pools):
        c.error("tenants", "tenant pods must run sandboxed, but no pool runs gvisor or kata")

    # Cluster-wide rules over the pools.
    seen_pools: set[str] = set()
    for p in pools:
        if p.name in seen_pools:
            c.error(f"pools[{p.name}].name", "duplicate pool name")
        seen_pools.add(p.name)
    control_planes = [p for p in pools if p.is_control_plane]
    if pools and len(control_planes) != 1:
        c.error("pools", f"exactly one pool must have role control-plane (found "
                         f"{len(control_planes)})")
    vip = None
    if control_planes:
        cp = control_planes[0]
        if cp.count % 2 == 0:
            c.error(f"pools[{cp.name}].count", f"{cp.count} control planes cannot keep etcd "
                                               "quorum; use 1, or 3/5/7 for HA")
        if cp.count > 1:
            if net["controlPlaneVip"] is None:
                c.error("network.controlPlaneVip", "is required for HA (more than one control "
                                                   "plane): a free address in network.cidr")
            else:
                vip = c.address(net["controlPlaneVip"], "network.controlPlaneVip")
                if vip is not None and vip not in cidr:
                    c.error("network.controlPlaneVip", f"{vip} is outside network.cidr {cidr}")
    if pools and not any(not p.is_control_plane and p.count > 0 for p in pools):
        c.error("pools", "at least one worker pool with count > 0 is required")

    nodes: list[NodeSpec] = []
    seen_nodes: dict[str, str] = {}
    next_host = first_host if isinstance(first_host, int) else 10
    for p in pools:
        for node_name in p.node_names:
            if node_name in seen_nodes:
                c.error(f"pools[{p.name}].names", f"node name {node_name!r} is also used by "
                                                  f"pool {seen_nodes[node_name]!r}")
            seen_nodes[node_name] = p.name
            ip = cidr.network_address + next_host
            next_host += 1
            if cidr.prefixlen and (ip not in cidr or ip == cidr.broadcast_address):
                c.error("network.cidr", f"{cidr} has no room for node {node_name} (addresses "
                                        f"are assigned from host {first_host} upward)")
                continue
            if ip in (gateway, vip):
                c.error("network.firstNodeHost", f"node {node_name} would get {ip}, which is "
                                                 "the gateway or control-plane VIP")
            nodes.append(NodeSpec(node_name, p, ip, node_mac(stack, node_name)))

    if len({p.libvirt_uri for p in pools}) > 1 and mode != "bridge":
        c.error("network.mode", "pools on several libvirt hosts need network.mode bridge (a "
                                "bridge on a segment every host shares); a NAT network exists "
                                "on one host only")

    if c.problems:
        raise ConfigError(c.problems)

    assert gateway is not None
    return ClusterSpec(
        stack=stack,
        admin_user=admin_user,
        storage_pool=storage_pool,
        network=NetworkSpec(network_name, mode, cidr, dns_domain, net["bridge"], gateway,
                            tuple(dns), vip, first_host),
        kubernetes=KubernetesSpec(k8s_version, pod_cidr, service_cidr, cluster_name,
                                  k8s_artifacts["kubeadm"], k8s_artifacts["kubelet"],
                                  k8s_artifacts["kubectl"], token_ttl),
        containerd=containerd,
        runc=runc,
        cni_plugins=cni_plugins,
        crictl=crictl,
        cni=cni,
        gvisor=gvisor,
        kata=kata,
        kube_vip_version=kube_vip_version,
        pools=tuple(pools),
        nodes=tuple(nodes),
        tenants=tuple(tenants),
    )


def from_pulumi_config(get: Callable[[str], Any], keys: Sequence[str], stack: str) -> ClusterSpec:
    """Build the raw mapping from a config getter (object values parsed) and validate it."""
    return load({k: get(k) for k in keys}, stack)
