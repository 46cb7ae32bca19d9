"""Kubernetes: version, binaries and the cluster's address ranges."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from components.spec.collector import (
    DNS_LABEL_RE,
    IMAGE_REPOSITORY_RE,
    TTL_RE,
    URL_RE,
    VERSION_RE,
    Collector,
)
from components.spec.model import Artifact, KubernetesSpec

BINARIES = ("kubeadm", "kubelet", "kubectl")
# A pinned tag: never `latest`, which would move under a mirror.
IMAGE_TAG_ANY = re.compile(r"^(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def read_kubernetes(c: Collector, raw: Any, defaults: Mapping[str, Any]) -> KubernetesSpec:
    k8s = c.section(raw, "kubernetes", defaults["kubernetes"])
    version = c.version(k8s["version"], "kubernetes.version", VERSION_RE,
                        "a pinned version like 1.34.2 (no 'v', no 'latest')")
    base_url = c.string(k8s["baseUrl"], "kubernetes.baseUrl", URL_RE, "an http(s):// URL")
    digests = c.checksums(k8s, "kubernetes", "version", version,
                          [f"{b}Sha256" for b in BINARIES], "sha256")
    binaries = {b: Artifact(version or "", f"sha256:{digests.get(f'{b}Sha256', '')}",
                            base_url.rstrip("/"))
                for b in BINARIES}
    return KubernetesSpec(
        version=version or "",
        pod_cidr=c.network(k8s["podCidr"], "kubernetes.podCidr"),
        service_cidr=c.network(k8s["serviceCidr"], "kubernetes.serviceCidr"),
        cluster_name=c.string(k8s["clusterName"], "kubernetes.clusterName", DNS_LABEL_RE,
                              "a DNS label"),
        kubeadm=binaries["kubeadm"],
        kubelet=binaries["kubelet"],
        kubectl=binaries["kubectl"],
        token_ttl=c.string(k8s["tokenTtl"], "kubernetes.tokenTtl", TTL_RE,
                           "a duration like 30m or 2h"),
        image_repository=c.string(k8s["imageRepository"], "kubernetes.imageRepository",
                                  IMAGE_REPOSITORY_RE,
                                  "a registry and path such as registry.k8s.io").rstrip("/"),
        etcd_image_tag=c.string(k8s["etcdImageTag"], "kubernetes.etcdImageTag", IMAGE_TAG_ANY,
                                "an image tag such as 3.6.5-0"),
        coredns_image_tag=c.string(k8s["corednsImageTag"], "kubernetes.corednsImageTag",
                                   IMAGE_TAG_ANY, "an image tag such as v1.12.1"),
        pause_image_tag=c.string(k8s["pauseImageTag"], "kubernetes.pauseImageTag",
                                 IMAGE_TAG_ANY, "an image tag such as 3.10.1"),
        control_plane_timeout=c.string(k8s["controlPlaneTimeout"],
                                       "kubernetes.controlPlaneTimeout", TTL_RE,
                                       "a duration like 4m or 20m"),
        leader_election=_leader_election(c, k8s["leaderElection"], defaults),
        etcd_timers=_etcd_timers(c, k8s["etcd"], defaults),
        api_client_timeout=_seconds(c, k8s["apiClientTimeout"], "kubernetes.apiClientTimeout"),
        pod_pids_limit=c.integer(k8s["podPidsLimit"], "kubernetes.podPidsLimit", 64, 4194304),
        drain_timeout=c.string(k8s["drainTimeout"], "kubernetes.drainTimeout", TTL_RE,
                               "a duration like 10m or 1h"),
    )


_SECONDS = re.compile(r"^(\d+)(s|m)$")


def _leader_election(c: Collector, raw: Any, defaults: Mapping[str, Any]) -> tuple[str, str, str]:
    """Kubernetes' own rule: retryPeriod < renewDeadline < leaseDuration."""
    path = "kubernetes.leaderElection"
    le = c.section(raw, path, defaults["kubernetes"]["leaderElection"])
    keys = ("leaseDuration", "renewDeadline", "retryPeriod")
    seconds = [s for key in keys if (s := _seconds(c, le[key], f"{path}.{key}")) is not None]
    if len(seconds) < len(keys):
        return ("15s", "10s", "2s")
    lease, renew, retry = seconds
    if not retry < renew < lease:
        c.error(path, "needs retryPeriod < renewDeadline < leaseDuration")
    return (str(le[keys[0]]), str(le[keys[1]]), str(le[keys[2]]))


# etcd's own limits: an election timeout of at least five heartbeats, and at most 50 s.
MAX_ELECTION_TIMEOUT_MS = 50000


def _etcd_timers(c: Collector, raw: Any, defaults: Mapping[str, Any]) -> tuple[int, int]:
    path = "kubernetes.etcd"
    etcd = c.section(raw, path, defaults["kubernetes"]["etcd"])
    errors = len(c.problems)
    heartbeat = c.integer(etcd["heartbeatIntervalMs"], f"{path}.heartbeatIntervalMs", 10,
                          MAX_ELECTION_TIMEOUT_MS // 5)
    election = c.integer(etcd["electionTimeoutMs"], f"{path}.electionTimeoutMs", 50,
                         MAX_ELECTION_TIMEOUT_MS)
    if len(c.problems) == errors and election < 5 * heartbeat:
        c.error(path, f"electionTimeoutMs ({election}) must be at least five heartbeats "
                      f"(5 x heartbeatIntervalMs = {5 * heartbeat})")
    return heartbeat, election


def duration_seconds(value: object) -> int:
    """A duration like "90s" or "5m" in seconds; ValueError for anything else."""
    match = _SECONDS.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration like 90s or 5m")
    return int(match[1]) * (60 if match[2] == "m" else 1)


def _seconds(c: Collector, value: Any, path: str) -> int | None:
    if value is None:
        return None
    try:
        return duration_seconds(value)
    except ValueError as error:
        c.error(path, str(error))
        return None
