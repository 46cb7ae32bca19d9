"""The typed stack specification: frozen objects the components read, and the names the
scheduler relies on. Built only by `components.spec.load()`."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
DEFAULT_IMAGE_REPOSITORY = "registry.k8s.io"
KUBEADM_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler",
                      "kube-proxy")
# Images the program names itself (the rest are pinned by the stack's config).
SAMPLE_IMAGE = "docker.io/library/nginx:1.27"
PROOF_IMAGE = "docker.io/library/busybox:1.36.1"
KUBE_VIP_REPOSITORY = "ghcr.io/kube-vip/kube-vip"


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
class MirrorSpec:
    """Where nodes fetch from instead of the internet (an air-gapped site's mirrors)."""

    files: str | None = None  # serves every download at <files>/<upstream host>/<path>
    registry: str | None = None  # serves every image as <registry>/<upstream host>/<path>
    # Upstream registry -> containerd mirror host URL, overriding `registry` for that one.
    registries: Mapping[str, str] = field(default_factory=dict)
    apt: str | None = None  # a Debian archive mirror for cloud-init's packages
    apt_security: str | None = None  # a Debian security archive mirror
    offline: bool = False  # refuse any artifact that would still come from the internet

    @property
    def any(self) -> bool:
        return bool(self.files or self.registry or self.registries or self.apt)

    def registry_host(self, upstream: str) -> str | None:
        """The mirror host URL containerd is given for an upstream registry, if any."""
        if upstream in self.registries:
            return self.registries[upstream]
        if self.registry:
            return f"{self.registry}/v2/{upstream}"
        return None


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
    # Where kubeadm pulls the control-plane images, and the sandbox (pause) image every node
    # uses; the tags are kubeadm's defaults for `version`, pinned here so nothing is implied.
    image_repository: str = "registry.k8s.io"
    etcd_image_tag: str = "3.6.5-0"
    coredns_image_tag: str = "v1.12.1"
    pause_image_tag: str = "3.10.1"
    # kubeadm's wait for the control plane's health (its default is 4m); slow hosts need more.
    control_plane_timeout: str = "4m"
    # controller-manager and scheduler leader election: lease, renew deadline, retry period.
    leader_election: tuple[str, str, str] = ("15s", "10s", "2s")
    # etcd's raft timers in milliseconds: heartbeat interval, election timeout.
    etcd_timers: tuple[int, int] = (100, 1000)
    # The Kubernetes provider's request timeout in seconds (None: the client's own defaults).
    api_client_timeout: int | None = None
    # KubeletConfiguration podPidsLimit: a fork bomb in one pod cannot exhaust the node's PIDs.
    pod_pids_limit: int = 1024
    # How long a node leaving the cluster (or being upgraded) may take to drain.
    drain_timeout: str = "10m"

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def pause_image(self) -> str:
        return f"{self.image_repository}/pause:{self.pause_image_tag}"

    @property
    def control_plane_images(self) -> tuple[str, ...]:
        """What kubeadm pulls, named as kubeadm names them (`kubeadm config images list`)."""
        repo, tag = self.image_repository, f"v{self.version}"
        # kubeadm keeps CoreDNS's own sub-path only in the default repository.
        coredns = "coredns/coredns" if repo == DEFAULT_IMAGE_REPOSITORY else "coredns"
        return (*(f"{repo}/{c}:{tag}" for c in KUBEADM_COMPONENTS),
                f"{repo}/{coredns}:{self.coredns_image_tag}", self.pause_image,
                f"{repo}/etcd:{self.etcd_image_tag}")


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
    # Beyond RFC 1918, CGNAT, link-local and multicast: where tenant pods may never connect.
    denied_egress: tuple[ipaddress.IPv4Network, ...] = ()


@dataclass(frozen=True)
class TenantSpec:
    """A tenant namespace: sandboxed pods only, default-deny network, quota and limits."""

    name: str
    quota: Mapping[str, str]  # ResourceQuota `hard`, in the API's resource names
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
    base_image_checksum: str | None = None  # "<sha256|sha512>:<hex>"; verified before use

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
    mirrors: MirrorSpec = field(default_factory=lambda: MirrorSpec())

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
    def uses_vip(self) -> bool:
        """The API server is reached through a virtual IP (kube-vip): every HA stack, and one
        shrunk from HA to a single control plane (its endpoint never changes)."""
        return self.network.control_plane_vip is not None

    @property
    def control_plane_endpoint(self) -> str:
        host = self.network.control_plane_vip or self.control_plane_nodes[0].ip
        return f"{host}:6443"

    @property
    def enabled_sandboxes(self) -> tuple[str, ...]:
        """Sandboxes some node runs. A pool scaled to 0 keeps its runtimes for later, but its
        RuntimeClass, sample pod and proof Job would only stay Pending: they wait for nodes."""
        enabled = {r for p in self.pools if p.count for r in p.runtimes}
        return tuple(r for r in SANDBOX_HANDLERS if r in enabled)

    @property
    def libvirt_uris(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.libvirt_uri for p in self.pools))

    def pools_with(self, runtime: str) -> tuple[PoolSpec, ...]:
        """The pools with nodes that run `runtime` (as enabled_sandboxes counts them)."""
        return tuple(p for p in self.pools if p.count and runtime in p.runtimes)

    def needs_kvm(self, pool: PoolSpec) -> bool:
        """Kata starts a VM per pod, and runsc's kvm platform uses KVM directly: either needs
        /dev/kvm inside the node VM."""
        return "kata" in pool.runtimes or (
            "gvisor" in pool.runtimes and self.gvisor.platform == "kvm")


def sandbox_label(runtime: str) -> str:
    return f"{SANDBOX_LABEL_PREFIX}{runtime}"

