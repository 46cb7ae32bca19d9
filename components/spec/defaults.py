"""Default configuration (documented in the README's configuration reference)."""

from __future__ import annotations

from typing import Any

from components.spec.model import DEFAULT_IMAGE_REPOSITORY, DEFAULT_LIBVIRT_URI

DEFAULT_BASE_IMAGE = (
    "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
)

DEFAULTS: dict[str, Any] = {
    "adminUser": "k8sadmin",
    "libvirt": {"uri": DEFAULT_LIBVIRT_URI, "storagePool": "default",
                "baseImage": DEFAULT_BASE_IMAGE, "baseImageChecksum": None, "domainType": "kvm",
                "cpuMode": None, "boot": None},
    "network": {"name": "sandboxed-k8s", "mode": "nat", "cidr": "10.17.0.0/24", "domain": None,
                "bridge": None, "gateway": None, "dns": None, "controlPlaneVip": None,
                "firstNodeHost": 10, "deniedEgressCidrs": []},
    "kubernetes": {
        "version": "1.34.2",
        "podCidr": "10.244.0.0/16",
        "serviceCidr": "10.96.0.0/12",
        "clusterName": "sandboxed-k8s",
        "tokenTtl": "30m",
        "drainTimeout": "10m",
        "podPidsLimit": 1024,
        "baseUrl": "https://dl.k8s.io/release",
        # Checksums: None takes those pinned for `version` (components/spec/pins.py).
        "kubeadmSha256": None,
        "kubeletSha256": None,
        "kubectlSha256": None,
        # kubeadm 1.34.2's own image defaults (cmd/kubeadm/app/constants), written out so the
        # artifact list is exact and a mirror can be filled from it.
        "imageRepository": DEFAULT_IMAGE_REPOSITORY,
        "etcdImageTag": "3.6.5-0",
        "corednsImageTag": "v1.12.1",
        "pauseImageTag": "3.10.1",
        "controlPlaneTimeout": "4m",
        "leaderElection": {"leaseDuration": "15s", "renewDeadline": "10s", "retryPeriod": "2s"},
        # etcd's own defaults, in milliseconds.
        "etcd": {"heartbeatIntervalMs": 100, "electionTimeoutMs": 1000},
        "apiClientTimeout": None,
    },
    "containerd": {"version": "2.1.5",
                   "sha256": None,
                   "baseUrl": "https://github.com/containerd/containerd/releases/download"},
    "runc": {"version": "1.3.4",
             "sha256": None,
             "baseUrl": "https://github.com/opencontainers/runc/releases/download"},
    "cniPlugins": {"version": "1.8.0",
                   "sha256": None,
                   "baseUrl": "https://github.com/containernetworking/plugins/releases/download"},
    "crictl": {"version": "1.34.0",
               "sha256": None,
               "baseUrl": "https://github.com/kubernetes-sigs/cri-tools/releases/download"},
    "cni": {"flannelVersion": "v0.26.7", "flannelCniPluginVersion": "v1.7.1-flannel1",
            "imageRegistry": "docker.io/flannel",
            "networkPolicyImage": "registry.k8s.io/networking/kube-network-policies:v1.1.0"},
    "gvisor": {"release": "20251118.0", "layout": "binaries",
               "runscSha512": None,
               "shimSha512": None,
               "baseUrl": "https://storage.googleapis.com/gvisor/releases/release",
               # systrap and runsc's own defaults (directfs on, overlay2 root:self): chosen
               # from benchmarks/sandbox_overhead.py, reasons in the README's "Performance".
               "platform": "systrap", "flags": {},
               # Derived by benchmarks/sandbox_overhead.py (derive_overhead: the measured
               # extra over runc x 1.5): 40 MiB more PSS per pod after its workloads, 113m of
               # extra CPU while a sandbox starts (docs/benchmarks/sandbox_overhead.txt).
               "overhead": {"cpu": "170m", "memory": "64Mi"}},
    "kata": {"version": "3.7.0",
             "sha256": None,
             "baseUrl": "https://github.com/kata-containers/kata-containers/releases/download",
             "overhead": {"cpu": "250m", "memory": "320Mi"}},
    "kubeVip": {"version": "v0.9.2"},
    "mirrors": {"files": None, "registry": None, "registries": {}, "apt": None,
                "aptSecurity": None, "offline": False},
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
    "baseImageChecksum": None, "domainType": None, "cpuMode": None, "boot": None,
}
BOOT_DEFAULTS: dict[str, Any] = {"kernel": None, "initrd": None, "cmdline": ""}
TAINT_KEYS = ("key", "value", "effect")
TENANT_DEFAULTS: dict[str, Any] = {
    "name": None,
    # Sized so the default 20 pods fit at their default ephemeral-storage limit (20 x 512Mi);
    # nodePorts / loadBalancers: None is 0, or no limit with allowNodeServices.
    "quota": {"cpu": "4", "memory": "8Gi", "pods": 20, "secrets": 50, "configMaps": 50,
              "services": 20, "nodePorts": None, "loadBalancers": None,
              "persistentVolumeClaims": 10, "ephemeralStorage": "10Gi"},
    "limits": {"cpu": "500m", "memory": "512Mi", "ephemeralStorage": "512Mi"},
    "requests": {"cpu": "100m", "memory": "128Mi", "ephemeralStorage": "64Mi"},
    "allowNodeServices": False,
}
# Namespaces that must never become tenants: the cluster's own and Kubernetes' reserved ones.
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease",
                       "kube-flannel", "sandbox-proof")

