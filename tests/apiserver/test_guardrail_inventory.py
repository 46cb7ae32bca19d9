"""The guardrails a tenant namespace must have, as the API server holds them after `pulumi up`.

NetworkPolicies are enforced by the pod network, not the API server, so here they can only be
shown present and shaped as intended; a missing one fails this test by name.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from components.render.guardrails import POLICY_NAME, tenant_namespace_labels
from tests.apiserver.stack import AppliedStack

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]

TENANT_POLICIES = {"default-deny", "allow-same-namespace", "allow-dns", "allow-internet"}


def names(applied: AppliedStack, resource: str, namespace: str) -> set[str]:
    items = applied.kubectl.get(resource, "-n", namespace)["items"]
    return {i["metadata"]["name"] for i in items}


def test_every_tenant_namespace_has_its_guardrails(applied: AppliedStack) -> None:
    minor = applied.spec.kubernetes.minor
    for tenant in applied.spec.tenants:
        ns = tenant.name
        labels = applied.kubectl.get("namespace", ns)["metadata"]["labels"]
        for key, value in tenant_namespace_labels(minor).items():
            assert labels.get(key) == value, f"{ns}: label {key}"
        assert names(applied, "networkpolicies", ns) >= TENANT_POLICIES, ns
        deny = applied.kubectl.get("networkpolicy", "default-deny", "-n", ns)["spec"]
        assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny and "egress" not in deny
        assert "tenant-quota" in names(applied, "resourcequotas", ns)
        assert "tenant-limits" in names(applied, "limitranges", ns)
        assert "tenant-admin" in names(applied, "roles", ns)
        assert "tenant-admin" in names(applied, "rolebindings", ns)


def checked_policy(applied: AppliedStack) -> dict[str, Any]:
    """The policy once the server's type checker has seen its current generation."""
    deadline = time.monotonic() + 60
    while True:
        policy = applied.kubectl.get("validatingadmissionpolicy", POLICY_NAME)
        status = policy.get("status", {})
        if status.get("observedGeneration") == policy["metadata"]["generation"]:
            return policy
        assert time.monotonic() < deadline, f"the policy was never type-checked: {status}"
        time.sleep(0.5)


def test_the_admission_policy_is_bound_and_type_checks(applied: AppliedStack) -> None:
    # The server compiles and type-checks the CEL against the Pod schema (cel-python cannot);
    # a wrong field or type shows up as an expression warning here.
    status = checked_policy(applied)["status"]
    assert status.get("typeChecking") == {}, status
    binding = applied.kubectl.get("validatingadmissionpolicybinding", POLICY_NAME)
    assert binding["spec"]["policyName"] == POLICY_NAME
    assert binding["spec"]["validationActions"] == ["Deny"]
