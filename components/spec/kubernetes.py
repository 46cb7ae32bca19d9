"""Kubernetes: version, binaries and the cluster's address ranges."""

from __future__ import annotations

from typing import Any

from components.spec.collector import DNS_LABEL_RE, TTL_RE, URL_RE, VERSION_RE, Collector
from components.spec.defaults import DEFAULTS
from components.spec.model import Artifact, KubernetesSpec


def read_kubernetes(c: Collector, raw: Any) -> KubernetesSpec:
    k8s = c.section(raw, "kubernetes", DEFAULTS["kubernetes"])
    version = c.string(k8s["version"], "kubernetes.version", VERSION_RE,
                       "a pinned version like 1.34.2 (no 'v', no 'latest')")
    base_url = c.string(k8s["baseUrl"], "kubernetes.baseUrl", URL_RE, "an http(s):// URL")
    binaries = {
        b: Artifact(version,
                    f"sha256:{c.checksum(k8s[f'{b}Sha256'], f'kubernetes.{b}Sha256', 'sha256')}",
                    base_url.rstrip("/"))
        for b in ("kubeadm", "kubelet", "kubectl")
    }
    return KubernetesSpec(
        version=version,
        pod_cidr=c.network(k8s["podCidr"], "kubernetes.podCidr"),
        service_cidr=c.network(k8s["serviceCidr"], "kubernetes.serviceCidr"),
        cluster_name=c.string(k8s["clusterName"], "kubernetes.clusterName", DNS_LABEL_RE,
                              "a DNS label"),
        kubeadm=binaries["kubeadm"],
        kubelet=binaries["kubelet"],
        kubectl=binaries["kubectl"],
        token_ttl=c.string(k8s["tokenTtl"], "kubernetes.tokenTtl", TTL_RE,
                           "a duration like 30m or 2h"),
        pod_pids_limit=c.integer(k8s["podPidsLimit"], "kubernetes.podPidsLimit", 64, 4194304),
    )
