"""Each count and storage limit of a tenant's quota refuses the object past it, on a real API
server. The quota and LimitRange are the program's own renderings for a tenant whose limits
are overridden down to one or two (tenants[].quota.*), in a fresh namespace per test so the
stack's tenants, and the other cases, are left alone."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from components.render.guardrails import limit_range, resource_quota, tenant_namespace_labels
from components.spec import TenantSpec, load
from tests.apiserver.stack import AppliedStack, wait_for
from verify.checks import compliant_pod
from verify.kube import Obj

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]

_names = itertools.count()
# kube-root-ca.crt, published into every namespace by a controller, takes one ConfigMap.
TIGHT = {"secrets": 1, "configMaps": 2, "services": 2, "persistentVolumeClaims": 1,
         "ephemeralStorage": "1Gi", "pods": 5}


def tight_tenant(applied: AppliedStack) -> TenantSpec:
    config = {"tenants": [{"name": f"tenant-tight-{next(_names)}", "quota": TIGHT}]}
    tenant: TenantSpec = load(config, applied.stack).tenants[0]
    return tenant


@pytest.fixture
def tight(applied: AppliedStack) -> TenantSpec:
    """The namespace with the node-services label (out of the Services policy's binding), so
    the quota alone stands between the tenant and a NodePort or LoadBalancer."""
    tenant = tight_tenant(applied)
    namespace = tenant.name
    labels = tenant_namespace_labels(applied.spec.kubernetes.minor, allow_node_services=True)
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": namespace, "labels": labels}},
        {"apiVersion": "v1", "kind": "ResourceQuota", **resource_quota(tenant)},
        {"apiVersion": "v1", "kind": "LimitRange", **limit_range(tenant)},
    ]
    for obj in objects:
        applied.kubectl.run("apply", "--server-side", "-f", "-", stdin=json.dumps(obj))

    def counted() -> bool:
        """Usage known for every limit (the quota admission refuses what it has not counted),
        kube-root-ca.crt among the ConfigMaps."""
        quota = applied.kubectl.get("resourcequota", "tenant-quota", "-n", namespace)
        used = quota.get("status", {}).get("used", {})
        return set(quota["spec"]["hard"]) <= set(used) and used.get(
            "count/configmaps", "1") == "1"

    wait_for("the tight tenant's quota", counted)
    return tenant


def create(applied: AppliedStack, obj: Obj) -> tuple[bool, str]:
    proc = applied.kubectl.run("create", "-f", "-", stdin=json.dumps(obj), check=False)
    return proc.returncode == 0, proc.stderr.strip()


def secret(ns: str, n: int) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s{n}", "namespace": ns},
            "stringData": {"k": "v"}}


def config_map(ns: str, n: int) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"c{n}", "namespace": ns}, "data": {"k": "v"}}


def service(ns: str, n: int, kind: str = "ClusterIP") -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"svc{kind.lower()}{n}", "namespace": ns},
            "spec": {"type": kind, "selector": {"app": "x"}, "ports": [{"port": 80}]}}


def claim(ns: str, n: int) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"pvc{n}", "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}


def pod_asking(storage: str) -> Callable[[str, int], Obj]:
    def make(ns: str, n: int) -> Obj:
        pod = compliant_pod(f"disk{storage.lower()}{n}", ns, "gvisor", ["sleep", "1"])
        pod["spec"]["containers"][0]["resources"] = {
            "requests": {"ephemeral-storage": storage}, "limits": {"ephemeral-storage": storage}}
        return pod
    return make


# (quota key refused, how many are allowed, the object maker)
LIMITS = [
    ("count/secrets", 1, secret),
    ("count/configmaps", 1, config_map),  # plus kube-root-ca.crt
    ("services", 2, service),
    ("persistentvolumeclaims", 1, claim),
    ("ephemeral-storage", 2, pod_asking("512Mi")),
]


@pytest.mark.parametrize(("resource", "allowed", "make"), LIMITS, ids=[x[0] for x in LIMITS])
def test_a_tenant_over_a_limit_is_refused(applied: AppliedStack, tight: TenantSpec,
                                          resource: str, allowed: int,
                                          make: Callable[[str, int], Obj]) -> None:
    for n in range(allowed):
        ok, message = create(applied, make(tight.name, n))
        assert ok, f"{resource} #{n + 1} refused within the quota: {message}"
    ok, message = create(applied, make(tight.name, allowed))
    assert not ok, f"{resource}: one past the quota was created"
    assert "exceeded quota: tenant-quota" in message and resource in message, message


@pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
def test_node_services_are_refused_by_the_quota_too(applied: AppliedStack, tight: TenantSpec,
                                                    kind: str) -> None:
    """Even where the Services policy does not apply, the quota allows none of them."""
    ok, message = create(applied, service(tight.name, 0, kind))
    assert not ok, f"a {kind} Service was created"
    resource = {"NodePort": "services.nodeports", "LoadBalancer": "services.loadbalancers"}
    assert "exceeded quota: tenant-quota" in message and resource[kind] in message, message


def test_limit_range_gives_pods_ephemeral_storage(applied: AppliedStack,
                                                  tight: TenantSpec) -> None:
    """Without the defaults, the quota would refuse every pod that does not ask for disk."""
    pod = compliant_pod("plain", tight.name, "gvisor", ["sleep", "1"])
    ok, message = create(applied, pod)
    assert ok, message
    stored = applied.kubectl.get("pod", "plain", "-n", tight.name)
    resources = stored["spec"]["containers"][0]["resources"]
    assert resources["limits"]["ephemeral-storage"] == tight.default_limits["ephemeral-storage"]
    assert resources["requests"]["ephemeral-storage"] == \
        tight.default_requests["ephemeral-storage"]


def test_stack_tenants_carry_every_new_limit(applied: AppliedStack) -> None:
    for tenant in applied.spec.tenants:
        hard = applied.kubectl.get("resourcequota", "tenant-quota", "-n", tenant.name)[
            "spec"]["hard"]
        for key in ("count/secrets", "count/configmaps", "services", "persistentvolumeclaims",
                    "requests.ephemeral-storage", "limits.ephemeral-storage"):
            assert key in hard, (tenant.name, key)
        for key in ("services.nodeports", "services.loadbalancers"):
            assert (hard.get(key) == "0") is not tenant.allow_node_services, (tenant.name, key)
