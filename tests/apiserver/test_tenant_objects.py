"""What a tenant may create besides pods: Services that take node ports or other addresses, and
Secrets that mint service-account tokens."""

from __future__ import annotations

import json
import subprocess

import pytest

from components.render.guardrails import (
    SECRETS_POLICY_NAME,
    SERVICES_POLICY_NAME,
    tenant_namespace_labels,
)
from tests.apiserver.stack import AppliedStack
from verify.kube import Obj

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]


def service(namespace: str, name: str, **spec: object) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


def create(applied: AppliedStack, obj: Obj) -> subprocess.CompletedProcess[str]:
    return applied.kubectl.run("create", "-f", "-", stdin=json.dumps(obj), check=False)


def test_a_cluster_ip_service_is_allowed(applied: AppliedStack) -> None:
    done = create(applied, service(applied.tenant(), "plain"))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
def test_node_services_are_denied_in_tenant_namespaces(applied: AppliedStack,
                                                       kind: str) -> None:
    for tenant in applied.spec.tenants:
        done = create(applied, service(tenant.name, f"by-{kind.lower()}", type=kind))
        if tenant.allow_node_services:
            assert done.returncode == 0, f"{tenant.name} allows node services: {done.stderr}"
        else:
            assert done.returncode != 0, f"{kind} Service created in {tenant.name}"
            assert f"ValidatingAdmissionPolicy '{SERVICES_POLICY_NAME}'" in done.stderr


def test_a_tenant_allowed_node_services_may_create_them(applied: AppliedStack) -> None:
    """tenants[].allowNodeServices: the namespace label takes it out of the policy's binding."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "tenant-exposed",
        "labels": tenant_namespace_labels(applied.spec.kubernetes.minor, True)}}
    applied.kubectl.run("apply", "-f", "-", stdin=json.dumps(namespace))
    done = create(applied, service("tenant-exposed", "exposed", type="NodePort"))
    assert done.returncode == 0, done.stderr


def test_external_ips_are_denied_everywhere(applied: AppliedStack) -> None:
    """CVE-2020-8554: DenyServiceExternalIPs refuses them for every user and namespace."""
    for namespace in ("default", *(t.name for t in applied.spec.tenants)):
        done = create(applied, service(namespace, "hijack", externalIPs=["10.17.0.1"]))
        assert done.returncode != 0, f"externalIPs accepted in {namespace}"
        assert "Use of external IPs is denied by admission control" in done.stderr, done.stderr


def test_service_account_token_secrets_are_denied(applied: AppliedStack) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
              "metadata": {"name": "minted", "namespace": applied.tenant(),
                           "annotations": {"kubernetes.io/service-account.name": "default"}}}
    done = create(applied, secret)
    assert done.returncode != 0, "a token Secret was created"
    assert f"ValidatingAdmissionPolicy '{SECRETS_POLICY_NAME}'" in done.stderr
    opaque = {**secret, "type": "Opaque", "metadata": {"name": "plain",
                                                       "namespace": applied.tenant()}}
    assert create(applied, opaque).returncode == 0
