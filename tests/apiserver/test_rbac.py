"""A tenant admin, impersonated (`--as`, `--as-group tenant:<name>`), against real RBAC."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.apiserver.stack import AppliedStack
from verify.checks import compliant_pod

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]

USER = "tenant-user"


def as_tenant(applied: AppliedStack, *args: str, stdin: object = None,
              tenant: int = 0) -> subprocess.CompletedProcess[str]:
    return applied.kubectl.run(*args, stdin=None if stdin is None else json.dumps(stdin),
                               as_user=USER, groups=[f"tenant:{applied.tenant(tenant)}"],
                               check=False)


def assert_rbac_denied(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0, proc.stdout
    # RBAC's wording, not admission's: the request never reached the object's rules
    assert f'User "{USER}" cannot' in proc.stderr, proc.stderr


def test_tenant_admin_manages_workloads_in_its_namespace(applied: AppliedStack) -> None:
    ns = applied.tenant()
    pod = compliant_pod("rbac-pod", ns, "gvisor", ["sleep", "3600"])
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "rbac-deploy", "namespace": ns},
                  "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "rbac"}},
                           "template": {"metadata": {"labels": {"app": "rbac"}},
                                        "spec": {**pod["spec"], "restartPolicy": "Always"}}}}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "rbac-svc", "namespace": ns},
               "spec": {"selector": {"app": "rbac"}, "ports": [{"port": 80}]}}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "rbac-cm", "namespace": ns}, "data": {"k": "v"}}
    for obj in (pod, deployment, service, config_map):
        proc = as_tenant(applied, "create", "-f", "-", stdin=obj)
        assert proc.returncode == 0, f"{obj['kind']}: {proc.stderr}"
    assert as_tenant(applied, "get", "pods", "-n", ns).returncode == 0
    assert as_tenant(applied, "delete", "pod", "rbac-pod", "-n", ns).returncode == 0


def test_tenant_admin_can_do_nothing_in_another_tenants_namespace(
        applied: AppliedStack) -> None:
    other = applied.tenant(1)
    pod = compliant_pod("intruder", other, "gvisor", ["sleep", "3600"])
    assert_rbac_denied(as_tenant(applied, "create", "-f", "-", stdin=pod))
    for resource in ("pods", "secrets", "configmaps", "services", "deployments"):
        assert_rbac_denied(as_tenant(applied, "get", resource, "-n", other))
    assert_rbac_denied(as_tenant(applied, "delete", "networkpolicy", "default-deny",
                                 "-n", other))


def test_tenant_admin_cannot_touch_the_guardrails(applied: AppliedStack) -> None:
    ns = applied.tenant()
    runtime_class = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                     "metadata": {"name": "escape"}, "handler": "runc"}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1",
               "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": "escape"},
               "spec": {"policyName": "none", "validationActions": ["Audit"]}}
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "allow-all", "namespace": ns},
              "spec": {"podSelector": {}, "ingress": [{}], "egress": [{}]}}
    limit_range = {"apiVersion": "v1", "kind": "LimitRange",
                   "metadata": {"name": "escape", "namespace": ns},
                   "spec": {"limits": [{"type": "Container", "default": {"cpu": "64"}}]}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "escape"}}
    for obj in (runtime_class, binding, policy, limit_range, namespace):
        assert_rbac_denied(as_tenant(applied, "create", "-f", "-", stdin=obj))
    patch = '{"metadata": {"labels": {"x": "y"}}}'
    for args in (
        ("patch", "runtimeclass", "gvisor", "--type=merge", "-p", patch),
        ("patch", "validatingadmissionpolicy", "sandboxed-k8s-tenant-pods", "--type=merge",
         "-p", patch),
        ("delete", "validatingadmissionpolicybinding", "sandboxed-k8s-tenant-pods"),
        ("delete", "networkpolicy", "default-deny", "-n", ns),
        ("patch", "resourcequota", "tenant-quota", "-n", ns, "--type=merge",
         "-p", '{"spec": {"hard": {"pods": "10000"}}}'),
        ("delete", "limitrange", "tenant-limits", "-n", ns),
        ("label", "namespace", ns, "sandboxed-k8s.io/tenant-", "--overwrite"),
        ("label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged",
         "--overwrite"),
        ("delete", "namespace", ns),
        ("patch", "role", "tenant-admin", "-n", ns, "--type=merge", "-p", patch),
        ("create", "rolebinding", "escape", "-n", ns, "--clusterrole=cluster-admin",
         f"--user={USER}"),
    ):
        assert_rbac_denied(as_tenant(applied, *args))


def test_tenant_admin_gets_no_exec_ephemeral_containers_or_tokens(
        applied: AppliedStack) -> None:
    ns = applied.tenant()
    pod = compliant_pod("rbac-target", ns, "gvisor", ["sleep", "3600"])
    applied.kubectl.run("create", "-f", "-", stdin=json.dumps(pod))
    # kubectl debug adds an ephemeral container through pods/ephemeralcontainers
    assert_rbac_denied(as_tenant(applied, "debug", "rbac-target", "-n", ns,
                                 "--image=busybox", "--profile=restricted"))
    assert_rbac_denied(as_tenant(applied, "create", "token", "default", "-n", ns))
    assert_rbac_denied(as_tenant(applied, "exec", "rbac-target", "-n", ns, "--", "true"))
    # `can-i VERB pods/exec` would ask about a pod named "exec": subresources are a flag
    for verb, resource, subresource in (
        ("create", "pods", "exec"), ("get", "pods", "exec"), ("create", "pods", "attach"),
        ("create", "pods", "portforward"), ("patch", "pods", "ephemeralcontainers"),
        ("update", "pods", "ephemeralcontainers"), ("create", "serviceaccounts", "token"),
    ):
        proc = as_tenant(applied, "auth", "can-i", verb, resource,
                         f"--subresource={subresource}", "-n", ns)
        assert proc.stdout.strip() == "no", f"{verb} {resource}/{subresource}"
    # and the question is answered at all: what the Role grants is a yes
    granted = as_tenant(applied, "auth", "can-i", "get", "pods", "--subresource=log", "-n", ns)
    assert granted.stdout.strip() == "yes"
