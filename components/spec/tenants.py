"""Tenants: one namespace each, with quota and default limits."""

from __future__ import annotations

from typing import Any

from components.spec.collector import DNS_LABEL_RE, Collector
from components.spec.defaults import RESERVED_NAMESPACES, TENANT_DEFAULTS
from components.spec.model import TenantSpec

# tenants[].quota count keys -> ResourceQuota resource names.
QUOTA_COUNTS = {"secrets": "count/secrets", "configMaps": "count/configmaps",
                "services": "services", "persistentVolumeClaims": "persistentvolumeclaims"}
# Exposing a Service on every node (NodePort, LoadBalancer): 0 unless allowNodeServices.
NODE_SERVICE_QUOTAS = {"nodePorts": "services.nodeports",
                       "loadBalancers": "services.loadbalancers"}
# tenants[].limits / .requests keys -> LimitRange resource names.
CONTAINER_RESOURCES = {"cpu": "cpu", "memory": "memory", "ephemeralStorage": "ephemeral-storage"}
MAX_COUNT = 100000


def read_tenants(c: Collector, raw: Any) -> list[TenantSpec]:
    if not isinstance(raw, list):
        c.error("tenants", "must be a list of tenant objects")
        return []
    tenants: list[TenantSpec] = []
    for i, raw_tenant in enumerate(raw):
        t = c.section(raw_tenant, f"tenants[{i}]", TENANT_DEFAULTS)
        name = c.string(t["name"], f"tenants[{i}].name", DNS_LABEL_RE,
                        "a DNS label: lowercase letters, digits and '-'")
        path = f"tenants[{name or i}]"
        if name in RESERVED_NAMESPACES or name.startswith("kube-") or \
                name.startswith("sandboxed-k8s"):
            c.error(f"{path}.name", f"{name!r} is reserved for the cluster itself")
        if name in {x.name for x in tenants}:
            c.error(f"{path}.name", "duplicate tenant name")
        allow_node_services = c.boolean(t["allowNodeServices"], f"{path}.allowNodeServices")
        limits = c.section(t["limits"], f"{path}.limits", TENANT_DEFAULTS["limits"])
        requests = c.section(t["requests"], f"{path}.requests", TENANT_DEFAULTS["requests"])
        tenants.append(TenantSpec(
            name=name,
            quota=_quota(c, t["quota"], f"{path}.quota", allow_node_services),
            default_limits=_container_resources(c, limits, f"{path}.limits"),
            default_requests=_container_resources(c, requests, f"{path}.requests"),
            allow_node_services=allow_node_services,
        ))
    return tenants


def _quota(c: Collector, raw: Any, path: str, allow_node_services: bool) -> dict[str, str]:
    """The ResourceQuota's `hard`; cpu, memory and ephemeral storage bound requests and limits."""
    quota = c.section(raw, path, TENANT_DEFAULTS["quota"])
    hard = {"pods": str(c.integer(quota["pods"], f"{path}.pods", 1, 10000))}
    for key, resource in (("cpu", "cpu"), ("memory", "memory"),
                          ("ephemeralStorage", "ephemeral-storage")):
        value = c.quantity(quota[key], f"{path}.{key}")
        hard[f"requests.{resource}"] = hard[f"limits.{resource}"] = value
    for key, resource in QUOTA_COUNTS.items():
        hard[resource] = str(c.integer(quota[key], f"{path}.{key}", 0, MAX_COUNT))
    for key, resource in NODE_SERVICE_QUOTAS.items():
        if quota[key] is None:
            if not allow_node_services:
                hard[resource] = "0"
            continue
        count = c.integer(quota[key], f"{path}.{key}", 0, MAX_COUNT)
        if count and not allow_node_services:
            c.error(f"{path}.{key}", "needs allowNodeServices: true (the tenant may not create "
                                     "NodePort or LoadBalancer Services otherwise)")
        hard[resource] = str(count)
    return hard


def _container_resources(c: Collector, raw: dict[str, Any], path: str) -> dict[str, str]:
    return {CONTAINER_RESOURCES[k]: c.quantity(v, f"{path}.{k}") for k, v in raw.items()}
