"""The guardrails a tenant namespace must have, as the API server holds them after `pulumi up`.

NetworkPolicies are enforced by the pod network, not the API server, so here they can only be
shown present and shaped as intended; a missing one fails this test by name.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from components.render.guardrails import tenant_namespace_labels, tenant_policies
from tests.apiserver.stack import AppliedStack

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]

POLICY_NAMES = [p["metadata"]["name"] for p in tenant_policies(["gvisor"])]
TENANT_POLICIES = {"default-deny", "allow-same-namespace", "allow-dns", "allow-internet"}


def names(applied: AppliedStack, resource: str, namespace: str) -> set[str]:
    items = applied.kubectl.get(resource, "-n", namespace)["items"]
    return {i["metadata"]["name"] for i in items}


def test_every_tenant_namespace_has_its_guardrails(applied: AppliedStack) -> None:
    minor = applied.spec.kubernetes.minor
    for tenant in applied.spec.tenants:
        ns = tenant.name
        labels = applied.kubectl.get("namespace", ns)["metadata"]["labels"]
        for key, value in tenant_namespace_labels(minor, tenant.allow_node_services).items():
            assert labels.get(key) == value, f"{ns}: label {key}"
        assert names(applied, "networkpolicies", ns) >= TENANT_POLICIES, ns
        deny = applied.kubectl.get("networkpolicy", "default-deny", "-n", ns)["spec"]
        assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny and "egress" not in deny
        assert "tenant-quota" in names(applied, "resourcequotas", ns)
        assert "tenant-limits" in names(applied, "limitranges", ns)
        assert "tenant-admin" in names(applied, "roles", ns)
        assert "tenant-admin" in names(applied, "rolebindings", ns)


def checked_policy(applied: AppliedStack, name: str) -> dict[str, Any]:
    """The policy once the server's type checker has seen its current generation."""
    deadline = time.monotonic() + 60
    while True:
        policy = applied.kubectl.get("validatingadmissionpolicy", name)
        status = policy.get("status", {})
        if status.get("observedGeneration") == policy["metadata"]["generation"]:
            return policy
        assert time.monotonic() < deadline, f"{name} was never type-checked: {status}"
        time.sleep(0.5)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_each_admission_policy_is_bound_and_type_checks(applied: AppliedStack,
                                                        name: str) -> None:
    # The server compiles and type-checks the CEL against the object's schema (cel-python
    # cannot); a wrong field or type shows up as an expression warning here.
    status = checked_policy(applied, name)["status"]
    assert status.get("typeChecking") == {}, status
    binding = applied.kubectl.get("validatingadmissionpolicybinding", name)
    assert binding["spec"]["policyName"] == name
    assert binding["spec"]["validationActions"] == ["Deny"]
