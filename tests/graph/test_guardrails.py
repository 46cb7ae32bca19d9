"""Tenant guardrails in the graph: per tenant namespace, and the hardening reaching kubeadm."""

from __future__ import annotations

import base64
from typing import Any

import yaml

from components.pki import encryption_key_from
from components.render.guardrails import POLICY_NAME
from components.spec import TENANT_LABEL
from tests.graph.harness import Graph, Registration, fake_state, is_secret
from tests.graph.test_graph import script_params, shipped_yaml

TENANTS = ["tenant-a", "tenant-b"]
VAP = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
VAP_BINDING = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"


def named(graph: Graph, typ: str, name: str) -> Registration:
    (found,) = [r for r in graph.of_type(typ) if r.inputs["metadata"]["name"] == name]
    return found


def in_namespace(graph: Graph, typ: str, namespace: str) -> list[dict[str, Any]]:
    return [r.inputs for r in graph.of_type(typ)
            if r.inputs["metadata"].get("namespace") == namespace]


def test_every_tenant_namespace_is_guarded(graph: Graph) -> None:
    binding = named(graph, VAP_BINDING, POLICY_NAME).inputs
    selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]
    namespaces = {r.inputs["metadata"]["name"]: r for r in
                  graph.of_type("kubernetes:core/v1:Namespace")}
    for tenant in TENANTS:
        ns = namespaces[tenant]
        labels = ns.inputs["metadata"]["labels"]
        assert selector.items() <= labels.items()  # the policy binding applies here
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.34"
        policies = {p["metadata"]["name"] for p in in_namespace(
            graph, "kubernetes:networking.k8s.io/v1:NetworkPolicy", tenant)}
        assert {"default-deny", "allow-dns", "allow-internet"} <= policies
        assert len(in_namespace(graph, "kubernetes:core/v1:ResourceQuota", tenant)) == 1
        assert len(in_namespace(graph, "kubernetes:core/v1:LimitRange", tenant)) == 1
        for each_binding in graph.of_type(VAP_BINDING):  # every policy guards it from the start
            assert graph.depends_on(ns, each_binding)
    others = [n for n, r in namespaces.items() if TENANT_LABEL in
              r.inputs["metadata"].get("labels", {})]
    assert sorted(others) == TENANTS


def test_policy_depends_on_the_classes_it_names(graph: Graph) -> None:
    policy = named(graph, VAP, POLICY_NAME)
    expression = policy.inputs["spec"]["validations"][0]["expression"]
    for cls in graph.of_type("kubernetes:node.k8s.io/v1:RuntimeClass"):
        name = cls.inputs["metadata"]["name"]
        assert f"'{name}'" in expression
        assert graph.depends_on(policy, cls)


def test_encryption_and_audit_reach_every_control_plane(graph: Graph, stack: str) -> None:
    key = encryption_key_from(
        next(fake_state(r.type, r.name, r.inputs)["result"]
             for r in graph.of_type("random:index/randomPassword:RandomPassword")
             if r.name == "secrets-encryption-key"))
    assert len(base64.b64decode(key)) == 32
    steps = [r for r in graph.of_type("command:remote:Command")
             if r.name.endswith("-kubeadm-init") or
             (r.name.endswith("-kubeadm-join") and
              script_params(r).get("CONTROL_PLANE") == "1")]
    assert len(steps) == (3 if stack == "ha" else 1)
    for step in steps:
        params = script_params(step)
        encryption = yaml.safe_load(base64.b64decode(params["ENCRYPTION_CONFIG_B64"]))
        assert encryption["resources"][0]["providers"][0]["aescbc"]["keys"][0]["secret"] == key
        audit = yaml.safe_load(base64.b64decode(params["AUDIT_POLICY_B64"]))
        assert audit["kind"] == "Policy"
        assert is_secret(step.raw_inputs["stdin"])
    init = next(s for s in steps if s.name.endswith("-kubeadm-init"))
    cluster = next(d for d in shipped_yaml(init, "KUBEADM_CONFIG_B64")
                   if d["kind"] == "ClusterConfiguration")
    args = {a["name"]: a["value"] for a in cluster["apiServer"]["extraArgs"]}
    assert args["encryption-provider-config"] == "/etc/kubernetes/encryption/config.yaml"
    assert args["audit-policy-file"] == "/etc/kubernetes/audit/policy.yaml"
    assert args["audit-log-path"].startswith("/var/log/kubernetes/audit/")
    kubelet = next(d for d in shipped_yaml(init, "KUBEADM_CONFIG_B64")
                   if d["kind"] == "KubeletConfiguration")
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    init_config = next(d for d in shipped_yaml(init, "KUBEADM_CONFIG_B64")
                       if d["kind"] == "InitConfiguration")
    assert init_config["bootstrapTokens"][0]["ttl"] == "30m"


def test_proof_jobs_per_class(graph: Graph) -> None:
    jobs = {r.inputs["spec"]["template"]["spec"]["runtimeClassName"]: r
            for r in graph.of_type("kubernetes:batch/v1:Job")}
    classes = {c.inputs["metadata"]["name"]: c
               for c in graph.of_type("kubernetes:node.k8s.io/v1:RuntimeClass")}
    assert set(jobs) == set(classes)
    for name, job in jobs.items():
        assert graph.depends_on(job, classes[name])


def test_worker_joins_carry_no_control_plane_secrets(graph: Graph) -> None:
    for r in graph.of_type("command:remote:Command"):
        if r.name.endswith("-kubeadm-join") and script_params(r).get("CONTROL_PLANE") == "0":
            params = script_params(r)
            assert not {"CA_KEY_B64", "ENCRYPTION_CONFIG_B64", "SA_KEY_B64"} & set(params)


def test_quotas_are_not_awaited(graph: Graph) -> None:
    # pulumi-kubernetes allows a quota's status one fixed minute; quota admission refuses the
    # namespace's pods until the status exists, so skipping the wait opens nothing.
    quotas = graph.of_type("kubernetes:core/v1:ResourceQuota")
    assert quotas
    for quota in quotas:
        assert quota.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
