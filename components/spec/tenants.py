"""Tenants: one namespace each, with quota and default limits."""

from __future__ import annotations

from typing import Any

from components.spec.collector import DNS_LABEL_RE, Collector
from components.spec.defaults import RESERVED_NAMESPACES, TENANT_DEFAULTS
from components.spec.model import TenantSpec


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

