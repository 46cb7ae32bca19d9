"""Guardrail objects: the admission policy's CEL evaluated by a real CEL implementation
against tenant pods, and the network, quota and API-server documents."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import celpy
import kubernetes_validate
import pytest
from celpy.adapter import json_to_cel

from components.render import guardrails as render
from components.spec import TENANT_LABEL, load

CLASSES = ["gvisor", "kata"]


def evaluate(pod: dict[str, Any]) -> list[str]:
    """Messages of the validations the pod fails, as the API server would report them."""
    env = celpy.Environment()
    failed = []
    for validation in render.pod_validations(CLASSES):
        program = env.program(env.compile(validation["expression"]))
        result = program.evaluate({"object": json_to_cel(pod)})
        if isinstance(result, Exception):
            raise result
        if not bool(result):
            failed.append(validation["message"])
    return failed


def pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "tenant-a"},
        "spec": {"runtimeClassName": "gvisor", "automountServiceAccountToken": False,
                 "containers": [{"name": "c", "image": "busybox",
                                 "imagePullPolicy": "Always"}]},
    }
    base["spec"].update(spec)
    return base


def annotated(annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    p = pod(**spec)
    p["metadata"]["annotations"] = annotations
    return p


def without(key: str) -> dict[str, Any]:
    p = pod()
    del p["spec"][key]
    return p


def with_init_container(policy: str = "Always") -> dict[str, Any]:
    p = pod()
    p["spec"]["initContainers"] = [{"name": "init", "image": "busybox",
                                    "imagePullPolicy": policy}]
    return p


def pulled(policy: str | None) -> dict[str, Any]:
    p = pod()
    if policy is None:
        del p["spec"]["containers"][0]["imagePullPolicy"]
    else:
        p["spec"]["containers"][0]["imagePullPolicy"] = policy
    return p


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    # (case, pod, fragments of the expected denial messages; [] = allowed)
    ("gvisor, token off", pod(), []),
    ("kata, token off", pod(runtimeClassName="kata"), []),
    ("init containers follow the pod's class", with_init_container(), []),
    ("unrelated annotations", annotated({"team": "x", "gvisor.dev/x": "y"}), []),
    ("empty annotations map", annotated({}), []),
    ("no runtimeClassName", without("runtimeClassName"), ["runtimeClassName"]),
    ("runtimeClassName empty string", pod(runtimeClassName=""), ["runtimeClassName"]),
    ("runtimeClassName runc", pod(runtimeClassName="runc"), ["runtimeClassName"]),
    ("runtimeClassName with different case", pod(runtimeClassName="gVisor"),
     ["runtimeClassName"]),
    ("dev.gvisor annotation", annotated({"dev.gvisor.flag.debug": "true"}), ["dev.gvisor"]),
    ("dev.gvisor internal annotation",
     annotated({"dev.gvisor.spec.mount.x.share": "shared"}), ["dev.gvisor"]),
    ("token not set", without("automountServiceAccountToken"),
     ["automountServiceAccountToken"]),
    ("token on", pod(automountServiceAccountToken=True), ["automountServiceAccountToken"]),
    ("projected service-account token",
     pod(volumes=[{"name": "t", "projected": {"sources": [
         {"serviceAccountToken": {"path": "token"}}]}}]), ["service-account tokens"]),
    ("projected configMap only",
     pod(volumes=[{"name": "c", "projected": {"sources": [{"configMap": {"name": "x"}}]}},
                  {"name": "e", "emptyDir": {}}]), []),
    ("image cached: IfNotPresent", pulled("IfNotPresent"), ["imagePullPolicy"]),
    ("image cached: Never", pulled("Never"), ["imagePullPolicy"]),
    ("pull policy unset", pulled(None), ["imagePullPolicy"]),
    ("init container IfNotPresent", with_init_container("IfNotPresent"),
     ["imagePullPolicy"]),
    ("system priority class", pod(priorityClassName="system-node-critical"), ["priority"]),
    ("own priority class", pod(priorityClassName="tenant-batch"), []),
    ("everything wrong", annotated({"dev.gvisor.x": "1"}, runtimeClassName="runc",
                                   automountServiceAccountToken=True),
     ["runtimeClassName", "dev.gvisor", "automountServiceAccountToken"]),
]


@pytest.mark.parametrize(("case", "obj", "expected"), CASES, ids=[c[0] for c in CASES])
def test_policy_expressions(case: str, obj: dict[str, Any], expected: list[str]) -> None:
    failed = evaluate(obj)
    assert len(failed) == len(expected), failed
    for fragment, message in zip(expected, failed, strict=True):
        assert fragment in message


def test_policy_and_binding_objects_are_valid() -> None:
    policy = {"apiVersion": "admissionregistration.k8s.io/v1",
              "kind": "ValidatingAdmissionPolicy", **render.admission_policy(CLASSES)}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1",
               "kind": "ValidatingAdmissionPolicyBinding", **render.admission_binding()}
    for obj in (policy, binding):
        kubernetes_validate.validate(obj, "1.34", strict=True)
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
        TENANT_LABEL: "true"}
    rule = policy["spec"]["matchConstraints"]["resourceRules"][0]
    assert rule["resources"] == ["pods"] and set(rule["operations"]) == {"CREATE", "UPDATE"}


def test_namespace_labels_pin_restricted_to_the_cluster_minor() -> None:
    labels = render.tenant_namespace_labels("1.34")
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.34"
    assert labels[TENANT_LABEL] == "true"


def test_network_policies_default_deny_and_exclusions() -> None:
    policies = {p["metadata"]["name"]: p for p in render.network_policies(
        "tenant-a", ["10.17.0.0/24", "10.17.0.1/32", "10.244.0.0/16", "10.96.0.0/12",
                     "203.0.113.0/24"])}
    for p in policies.values():
        kubernetes_validate.validate({"apiVersion": "networking.k8s.io/v1",
                                      "kind": "NetworkPolicy", **copy.deepcopy(p)},
                                     "1.34", strict=True)
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["allow-dns"]["spec"]["egress"][0]
    assert {p["port"] for p in dns["ports"]} == {53}
    block = policies["allow-internet"]["spec"]["egress"][0]["to"][0]["ipBlock"]
    excluded = [ipaddress.IPv4Network(c) for c in block["except"]]

    def blocked(address: str) -> bool:
        return any(ipaddress.IPv4Address(address) in n for n in excluded)

    # node network, hypervisor, pods, Services, the whole private LAN behind the hypervisor,
    # carrier-grade NAT, link-local, multicast and the stack's extra range
    for address in ("169.254.169.254", "10.17.0.1", "10.17.0.11", "10.244.3.7", "10.96.0.1",
                    "192.168.1.1", "172.20.0.5", "10.0.0.1", "100.64.0.1", "224.0.0.251",
                    "239.255.255.250", "203.0.113.9"):
        assert blocked(address), address
    for address in ("1.1.1.1", "8.8.8.8", "100.128.0.1", "172.32.0.1"):
        assert not blocked(address), address


def test_quota_and_limits() -> None:
    tenant = load({"tenants": [{"name": "tenant-a"}]}, "dev").tenants[0]
    quota = render.resource_quota(tenant)
    limits = render.limit_range(tenant)
    assert quota["spec"]["hard"]["pods"] == "20"
    for key in ("count/secrets", "count/configmaps", "services", "persistentvolumeclaims",
                "requests.ephemeral-storage", "limits.ephemeral-storage"):
        assert key in quota["spec"]["hard"], key
    assert quota["spec"]["hard"]["services.nodeports"] == "0"
    assert quota["spec"]["hard"]["services.loadbalancers"] == "0"
    assert limits["spec"]["limits"][0]["default"] == {"cpu": "500m", "memory": "512Mi",
                                                      "ephemeral-storage": "512Mi"}
    assert limits["spec"]["limits"][0]["defaultRequest"]["ephemeral-storage"] == "64Mi"
    for kind, obj in (("ResourceQuota", quota), ("LimitRange", limits)):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": kind, **obj}, "1.34",
                                     strict=True)


def test_tenant_role_never_reaches_admin_objects() -> None:
    role = render.tenant_role("tenant-a")
    kubernetes_validate.validate({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                                  **role}, "1.34", strict=True)
    groups = {g for rule in role["rules"] for g in rule["apiGroups"]}
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert not groups & {"node.k8s.io", "admissionregistration.k8s.io",
                         "rbac.authorization.k8s.io", "networking.k8s.io"}
    assert not resources & {"namespaces", "resourcequotas", "limitranges", "runtimeclasses",
                            "networkpolicies", "*"}


def test_proof_job_runs_in_its_class() -> None:
    job = render.proof_job("gvisor")
    kubernetes_validate.validate({"apiVersion": "batch/v1", "kind": "Job", **job}, "1.34",
                                 strict=True)
    spec = job["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] == "gvisor"
    assert "uname -r" in spec["containers"][0]["command"][-1]


def test_encryption_and_audit_documents() -> None:
    enc = render.encryption_config("c2VjcmV0")
    providers = enc["resources"][0]["providers"]
    assert enc["resources"][0]["resources"] == ["secrets"]
    assert providers[0]["aescbc"]["keys"][0]["secret"] == "c2VjcmV0"
    assert providers[-1] == {"identity": {}}  # reads secrets written before encryption
    audit = render.audit_policy()
    secret_rule = next(r for r in audit["rules"]
                       if any("secrets" in g.get("resources", []) for g in r.get("resources",
                                                                                   [])))
    assert secret_rule["level"] == "Metadata"  # who read a secret, never its value
