"""kubeadm configuration (v1beta4, Kubernetes >= 1.31) and the kube-vip static pod, as YAML."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from components.spec.defaults import DEFAULTS
from components.spec.kubernetes import duration_seconds

KUBEADM_API = "kubeadm.k8s.io/v1beta4"
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
KUBE_VIP_MANIFEST = "/etc/kubernetes/manifests/kube-vip.yaml"
# Written by kubeadm-init.sh / kubeadm-join.sh on every control plane before kubeadm runs.
ENCRYPTION_CONFIG = "/etc/kubernetes/encryption/config.yaml"
AUDIT_POLICY = "/etc/kubernetes/audit/policy.yaml"
AUDIT_LOG_DIR = "/var/log/kubernetes/audit"
# The token a join config is rendered with: kubeadm-join.sh puts a token issued for that join
# attempt in its place. A well-formed token, so kubeadm validates the rendered config as is.
JOIN_TOKEN_PLACEHOLDER = "000000.issuedatjointime"
# etcd's own raft timers, as the stack's defaults hold them: written out only when changed.
ETCD_DEFAULT_TIMERS = (DEFAULTS["kubernetes"]["etcd"]["heartbeatIntervalMs"],
                       DEFAULTS["kubernetes"]["etcd"]["electionTimeoutMs"])


@dataclass(frozen=True)
class NodeRegistration:
    name: str
    labels: Mapping[str, str]
    # (key, value, effect); a control-plane node also gets kubeadm's control-plane taint.
    taints: Sequence[tuple[str, str, str]]
    control_plane: bool

    def render(self) -> dict[str, object]:
        taints: list[dict[str, str]] = [dict(CONTROL_PLANE_TAINT)] if self.control_plane else []
        taints += [{"key": k, "value": v, "effect": e} if v else {"key": k, "effect": e}
                   for k, v, e in self.taints]
        registration: dict[str, object] = {"name": self.name, "criSocket": CRI_SOCKET,
                                           "taints": taints}
        if self.labels:
            # Labels and taints are set as the kubelet registers, so no pod can race onto a
            # node before its pool's identity (and so its RuntimeClass match) exists.
            labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
            registration["kubeletExtraArgs"] = [{"name": "node-labels", "value": labels}]
        return registration


@dataclass(frozen=True)
class ClusterConfig:
    kubernetes_version: str
    cluster_name: str
    control_plane_endpoint: str
    pod_cidr: str
    service_cidr: str
    cert_sans: Sequence[str] = field(default=())
    image_repository: str = "registry.k8s.io"
    etcd_image_tag: str = "3.6.5-0"
    coredns_image_tag: str = "v1.12.1"
    pod_pids_limit: int = 1024
    # controller-manager and scheduler: lease duration, renew deadline, retry period.
    leader_election: tuple[str, str, str] = ("15s", "10s", "2s")
    # etcd's heartbeat interval and election timeout, in milliseconds.
    etcd_timers: tuple[int, int] = ETCD_DEFAULT_TIMERS


def _kubelet_configuration(pod_pids_limit: int) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        # Per pod, sandbox processes included: one pod's fork bomb cannot take the node's PIDs.
        # kubeadm stores this document for the cluster, so joined nodes get it too.
        "podPidsLimit": pod_pids_limit,
        # NetworkPolicy always lets a pod reach its own node: the kubelet API must not trust
        # anonymous callers and must ask the API server who may do what.
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True}},
        "authorization": {"mode": "Webhook"},
    }


def leader_election_args(timings: tuple[str, str, str]) -> list[dict[str, str]]:
    """A controller that cannot renew its lease in time exits (and restarts): on a slow or
    overloaded control plane the defaults make the controller-manager and scheduler crash-loop."""
    lease, renew, retry = timings
    return [{"name": "leader-elect-lease-duration", "value": lease},
            {"name": "leader-elect-renew-deadline", "value": renew},
            {"name": "leader-elect-retry-period", "value": retry}]


# kubeadm's other waits a slow control plane can outlast, with kubeadm's defaults in seconds:
# etcd calls (a joining member's promotion from learner is polled this long), a join's wait for
# the signed cluster-info (discovery) and for the kubelet's TLS bootstrap, an upgrade's wait
# for the static pods to restart.
KUBEADM_WAIT_DEFAULTS = {"etcdAPICall": 120, "discovery": 300, "tlsBootstrap": 300,
                         "upgradeManifests": 300}
JOIN_WAITS = ("etcdAPICall", "discovery", "tlsBootstrap")
UPGRADE_WAITS = ("etcdAPICall", "upgradeManifests")


def waits(timeout: str, *others: str) -> dict[str, str]:
    """kubeadm's waits for the kubelet and the control plane (4m each by default) set to
    `timeout`: slow hosts, such as nodes under software emulation, need them raised. Each of
    `others` (KUBEADM_WAIT_DEFAULTS) is raised to `timeout` too where that is longer than
    kubeadm's default, never shortened."""
    seconds = duration_seconds(timeout)
    return {"controlPlaneComponentHealthCheck": timeout, "kubeletHealthCheck": timeout,
            **{name: timeout for name in others if seconds > KUBEADM_WAIT_DEFAULTS[name]}}


def _dump_all(documents: Sequence[Mapping[str, object]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, width=4096)


def cluster_configuration(cluster: ClusterConfig) -> dict[str, object]:
    """The ClusterConfiguration document: what kubeadm init reads, and what the first control
    plane's upgrade writes into the cluster's kubeadm-config before `kubeadm upgrade apply`."""
    return {
        "apiVersion": KUBEADM_API,
        "kind": "ClusterConfiguration",
        "kubernetesVersion": f"v{cluster.kubernetes_version}",
        "clusterName": cluster.cluster_name,
        "controlPlaneEndpoint": cluster.control_plane_endpoint,
        "networking": {"podSubnet": cluster.pod_cidr, "serviceSubnet": cluster.service_cidr},
        # Written out, not left to kubeadm's defaults, so they match the artifact list (and so
        # a mirror holding exactly that list) and the sandbox image containerd pins.
        "imageRepository": cluster.image_repository,
        "etcd": {"local": _local_etcd(cluster)},
        "dns": {"imageTag": cluster.coredns_image_tag},
        "apiServer": {
            "certSANs": list(cluster.cert_sans),
            "extraArgs": [
                # kubeadm's own default is NodeRestriction; a Service's externalIPs let whoever
                # sets them take over that address's traffic cluster-wide (CVE-2020-8554).
                {"name": "enable-admission-plugins",
                 "value": "NodeRestriction,DenyServiceExternalIPs"},
                {"name": "encryption-provider-config", "value": ENCRYPTION_CONFIG},
                {"name": "audit-policy-file", "value": AUDIT_POLICY},
                {"name": "audit-log-path", "value": f"{AUDIT_LOG_DIR}/audit.log"},
                {"name": "audit-log-maxage", "value": "30"},
                {"name": "audit-log-maxbackup", "value": "10"},
                {"name": "audit-log-maxsize", "value": "100"},
            ],
            "extraVolumes": [
                _host_dir("encryption-config", posixpath.dirname(ENCRYPTION_CONFIG), True),
                _host_dir("audit-policy", posixpath.dirname(AUDIT_POLICY), True),
                _host_dir("audit-log", AUDIT_LOG_DIR, False),
            ],
        },
        "controllerManager": {"extraArgs": leader_election_args(cluster.leader_election)},
        "scheduler": {"extraArgs": leader_election_args(cluster.leader_election)},
    }


def _local_etcd(cluster: ClusterConfig) -> dict[str, object]:
    """Stacked etcd. Its raft timers only when the stack changes them: on a slow host a leader
    whose heartbeats arrive late is voted out again and again, and every linearizable read
    (the API server's, kubeadm's member list on a join) waits for the next leader."""
    local: dict[str, object] = {"imageTag": cluster.etcd_image_tag}
    if cluster.etcd_timers != ETCD_DEFAULT_TIMERS:
        heartbeat, election = cluster.etcd_timers
        local["extraArgs"] = [{"name": "heartbeat-interval", "value": str(heartbeat)},
                              {"name": "election-timeout", "value": str(election)}]
    return local


def render_cluster_configuration(cluster: ClusterConfig) -> str:
    return _dump_all([cluster_configuration(cluster)])


def render_init_config(cluster: ClusterConfig, node: NodeRegistration, advertise_address: str,
                       token: str, token_ttl: str, timeout: str = "4m") -> str:
    """kubeadm init --config: InitConfiguration + ClusterConfiguration + KubeletConfiguration."""
    init = {
        "apiVersion": KUBEADM_API,
        "kind": "InitConfiguration",
        "bootstrapTokens": [{
            "token": token,
            "ttl": token_ttl,
            "usages": ["signing", "authentication"],
            "groups": ["system:bootstrappers:kubeadm:default-node-token"],
        }],
        "localAPIEndpoint": {"advertiseAddress": advertise_address, "bindPort": 6443},
        "nodeRegistration": node.render(),
        "timeouts": waits(timeout),
    }
    return _dump_all([init, cluster_configuration(cluster),
                      _kubelet_configuration(cluster.pod_pids_limit)])


# kubeadm's own name for its upgrade health check, which gives a Job 15 seconds to complete;
# upgrade-node.sh runs the same Job (HEALTH_CHECK_JOB) with the stack's wait instead.
KUBEADM_JOB_CHECK = "CreateJob"
HEALTH_CHECK_JOB = "sandboxed-k8s-upgrade-health-check"


def render_upgrade_config(version: str, timeout: str = "4m") -> str:
    """kubeadm upgrade apply / upgrade node --config: the version to go to and kubeadm's waits
    as init's, its etcd calls and the static pods' restarts at least as long.
    kubeadm's Job check is left to render_upgrade_health_check_job's Job."""
    return _dump_all([{
        "apiVersion": KUBEADM_API,
        "kind": "UpgradeConfiguration",
        "apply": {"kubernetesVersion": f"v{version}",
                  "ignorePreflightErrors": [KUBEADM_JOB_CHECK]},
        "timeouts": waits(timeout, *UPGRADE_WAITS),
    }])


def render_upgrade_health_check_job(pause_image: str) -> str:
    """The Job kubeadm's upgrade health check creates (cmd/kubeadm/app/phases/upgrade/
    health.go: the pause image as user 999, tolerating the control-plane taint, no retries):
    the cluster can schedule, pull and run a pod. Its 15-second limit is kubeadm's; the
    upgrade step waits kubernetes.controlPlaneTimeout, which a slow host can meet."""
    return _dump_all([{
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": HEALTH_CHECK_JOB, "namespace": "kube-system"},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 600,
            "template": {"spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsUser": 999, "runAsGroup": 999, "runAsNonRoot": True},
                "tolerations": [CONTROL_PLANE_TAINT],
                "containers": [{"name": "health-check", "image": pause_image, "args": ["-v"]}],
            }},
        },
    }])


def _host_dir(name: str, path: str, read_only: bool) -> dict[str, object]:
    """A node directory mounted at the same path in the API server's static pod."""
    return {"name": name, "hostPath": path, "mountPath": path, "readOnly": read_only,
            "pathType": "DirectoryOrCreate"}


def render_join_config(node: NodeRegistration, api_endpoint: str, token: str,
                       ca_cert_hash: str, advertise_address: str, timeout: str = "4m") -> str:
    """kubeadm join --config; discovery is pinned to the cluster CA's public key hash."""
    join: dict[str, object] = {
        "apiVersion": KUBEADM_API,
        "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {
            "apiServerEndpoint": api_endpoint,
            "token": token,
            "caCertHashes": [ca_cert_hash],
        }},
        "nodeRegistration": node.render(),
        "timeouts": waits(timeout, *JOIN_WAITS),
    }
    if node.control_plane:
        # The CA, front-proxy CA, etcd CA and service-account keys are placed by the join
        # script beforehand, so no --certificate-key / upload-certs secret travels the API.
        join["controlPlane"] = {"localAPIEndpoint": {"advertiseAddress": advertise_address,
                                                     "bindPort": 6443}}
    return _dump_all([join])


def render_kube_vip_manifest(vip: str, interface: str, image: str, kubeconfig: str,
                             leader_election: tuple[str, str, str]) -> str:
    """Static pod holding the control-plane virtual IP (ARP mode, leader election).

    During the first `kubeadm init`, admin.conf has no RBAC yet, so kube-vip must use
    super-admin.conf there; the init script re-renders it with admin.conf afterwards.
    The lease follows kubernetes.leaderElection, as the controllers' do: with kube-vip's own
    5 s/3 s/1 s a busy control plane misses a renewal and the VIP is dropped until one is
    elected again, so every client (joins, kubelets, the token issuer) meets "no route to host".
    """
    lease, renew, retry = (str(duration_seconds(d)) for d in leader_election)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-vip", "namespace": "kube-system"},
        "spec": {
            "hostNetwork": True,
            "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["kubernetes"]}],
            "containers": [{
                "name": "kube-vip",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "args": ["manager"],
                "env": [
                    {"name": "vip_arp", "value": "true"},
                    {"name": "port", "value": "6443"},
                    {"name": "vip_interface", "value": interface},
                    {"name": "vip_cidr", "value": "32"},
                    {"name": "cp_enable", "value": "true"},
                    {"name": "cp_namespace", "value": "kube-system"},
                    {"name": "vip_leaderelection", "value": "true"},
                    {"name": "vip_leasename", "value": "plndr-cp-lock"},
                    {"name": "vip_leaseduration", "value": lease},
                    {"name": "vip_renewdeadline", "value": renew},
                    {"name": "vip_retryperiod", "value": retry},
                    {"name": "address", "value": vip},
                ],
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                "volumeMounts": [{"name": "kubeconfig", "mountPath": "/etc/kubernetes/admin.conf"}],
            }],
            "volumes": [{"name": "kubeconfig",
                         "hostPath": {"path": kubeconfig, "type": "FileOrCreate"}}],
        },
    }
    return _dump_all([pod])
