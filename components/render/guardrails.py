"""Tenant guardrails as Kubernetes objects (plain dicts in the API's own field names).

gVisor's threat model leaves the pod spec and runtime flags to the deployer, and NetworkPolicy
always lets a pod reach its own node: these objects are the boundary around the sandbox.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from components.spec import PROOF_IMAGE, TENANT_LABEL, TenantSpec

POLICY_NAME = "sandboxed-k8s-tenant-pods"
SERVICES_POLICY_NAME = "sandboxed-k8s-tenant-services"
SECRETS_POLICY_NAME = "sandboxed-k8s-tenant-secrets"
# On a tenant namespace whose Services may take node ports (tenants[].allowNodeServices).
NODE_SERVICES_LABEL = "sandboxed-k8s.io/node-services"
PROOF_NAMESPACE = "sandbox-proof"
# Link-local covers the cloud metadata address 169.254.169.254 and its neighbours.
LINK_LOCAL = "169.254.0.0/16"
# Never reachable from tenant pods, whatever the stack: private networks behind the hypervisor
# (RFC 1918, carrier-grade NAT), link-local and multicast.
NON_PUBLIC_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                     LINK_LOCAL, "224.0.0.0/4")

Obj = dict[str, Any]


def cel_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def pod_validations(sandbox_classes: Sequence[str]) -> list[Obj]:
    """CEL rules every tenant pod must pass (evaluated by the API server on CREATE/UPDATE)."""
    allowed = cel_list(sandbox_classes)
    return [
        {
            # Unset, empty or `runc` all fall outside the list: no tenant pod runs unsandboxed.
            "expression": f"has(object.spec.runtimeClassName) && "
                          f"object.spec.runtimeClassName in {allowed}",
            "message": f"tenant pods must set spec.runtimeClassName to one of {allowed}",
            "reason": "Forbidden",
        },
        {
            # runsc flags are outside gVisor's threat model: no pod may set them.
            "expression": "!has(object.metadata.annotations) || "
                          "object.metadata.annotations.all(k, !k.startsWith('dev.gvisor.'))",
            "message": "dev.gvisor.* annotations are not allowed in tenant namespaces",
            "reason": "Forbidden",
        },
        {
            "expression": "has(object.spec.automountServiceAccountToken) && "
                          "object.spec.automountServiceAccountToken == false",
            "message": "tenant pods must set spec.automountServiceAccountToken: false",
            "reason": "Forbidden",
        },
        {
            # The same token, asked for by hand: a projected serviceAccountToken source.
            "expression": "!has(object.spec.volumes) || object.spec.volumes.all(v, "
                          "!has(v.projected) || !has(v.projected.sources) || "
                          "v.projected.sources.all(s, !has(s.serviceAccountToken)))",
            "message": "tenant pods may not mount service-account tokens (projected "
                       "serviceAccountToken volumes)",
            "reason": "Forbidden",
        },
        {
            # On a shared node another tenant's privately pulled image is in the cache; with
            # Always the kubelet asks the registry, with this pod's credentials, every time.
            # (Not the AlwaysPullImages plugin: it is cluster-wide, and would tie every
            # system DaemonSet restart to the registry or local mirror being reachable.)
            "expression": " && ".join(
                f"(!has(object.spec.{field}) || object.spec.{field}.all(c, "
                "has(c.imagePullPolicy) && c.imagePullPolicy == 'Always'))"
                for field in ("containers", "initContainers", "ephemeralContainers")),
            "message": "tenant containers must set imagePullPolicy: Always",
            "reason": "Forbidden",
        },
        {
            # system-node-critical / system-cluster-critical preempt other tenants' pods.
            "expression": "!has(object.spec.priorityClassName) || "
                          "!object.spec.priorityClassName.startsWith('system-')",
            "message": "tenant pods may not use the system-* priority classes",
            "reason": "Forbidden",
        },
    ]


def service_validations() -> list[Obj]:
    """Rules for tenant Services in namespaces without tenants[].allowNodeServices."""
    return [{
        # NodePorts are a shared, exhaustible range on every node; load balancers expose the
        # tenant outside the cluster. (externalIPs are refused cluster-wide by the
        # DenyServiceExternalIPs plugin; refused here too, should the plugin be lost.)
        "expression": "!has(object.spec.type) || "
                      "!(object.spec.type in ['NodePort', 'LoadBalancer'])",
        "message": "tenant Services may not be of type NodePort or LoadBalancer",
        "reason": "Forbidden",
    }, {
        "expression": "!has(object.spec.externalIPs) || size(object.spec.externalIPs) == 0",
        "message": "tenant Services may not set spec.externalIPs",
        "reason": "Forbidden",
    }]


def secret_validations() -> list[Obj]:
    return [{
        # The token controller fills such a Secret with a token for the named account.
        "expression": "!has(object.type) || object.type != 'kubernetes.io/service-account-token'",
        "message": "tenant Secrets may not be of type kubernetes.io/service-account-token",
        "reason": "Forbidden",
    }]


def _policy(name: str, resource: str, validations: list[Obj]) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": [resource],
            }]},
            "validations": validations,
        },
    }


def admission_policy(sandbox_classes: Sequence[str]) -> Obj:
    return _policy(POLICY_NAME, "pods", pod_validations(sandbox_classes))


def services_policy() -> Obj:
    return _policy(SERVICES_POLICY_NAME, "services", service_validations())


def secrets_policy() -> Obj:
    return _policy(SECRETS_POLICY_NAME, "secrets", secret_validations())


def admission_binding(policy_name: str = POLICY_NAME) -> Obj:
    """Binds a policy to every tenant namespace (the services policy: those without
    tenants[].allowNodeServices). Tenants cannot change their namespace's labels."""
    selector: Obj = {"matchLabels": {TENANT_LABEL: "true"}}
    if policy_name == SERVICES_POLICY_NAME:
        selector["matchExpressions"] = [{"key": NODE_SERVICES_LABEL, "operator": "DoesNotExist"}]
    return {
        "metadata": {"name": policy_name},
        "spec": {
            "policyName": policy_name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": selector},
        },
    }


def tenant_policies(sandbox_classes: Sequence[str]) -> list[Obj]:
    """Every admission policy of the tenant namespaces; each gets a binding of its name."""
    return [admission_policy(sandbox_classes), services_policy(), secrets_policy()]


def tenant_namespace_labels(kubernetes_minor: str, allow_node_services: bool = False
                            ) -> dict[str, str]:
    """Pod Security `restricted`, enforced, warned and audited, pinned to the cluster's minor."""
    labels = {TENANT_LABEL: "true"}
    if allow_node_services:
        labels[NODE_SERVICES_LABEL] = "allowed"
    for mode in ("enforce", "warn", "audit"):
        labels[f"pod-security.kubernetes.io/{mode}"] = "restricted"
        labels[f"pod-security.kubernetes.io/{mode}-version"] = f"v{kubernetes_minor}"
    return labels


def network_policies(namespace: str, denied_cidrs: Sequence[str]) -> list[Obj]:
    """Default deny both ways; same-namespace traffic, DNS and the internet (minus the private,
    link-local and multicast ranges and `denied_cidrs`) allowed.

    Pods are reached only through the podSelector rules: the enforcer sees a Service's
    traffic after DNAT, so a pod of the same tenant behind its Service matches
    allow-same-namespace and kube-dns matches allow-dns, while the pod and service CIDRs stay
    excepted from the ipBlock (other tenants' pods, and Services whose endpoints are nodes,
    such as `kubernetes`, stay out of reach)."""
    def meta(name: str) -> Obj:
        return {"name": name, "namespace": namespace}

    collapsed = [str(n) for n in ipaddress.collapse_addresses(
        ipaddress.IPv4Network(c) for c in (*denied_cidrs, *NON_PUBLIC_RANGES))]
    return [
        {"metadata": meta("default-deny"),
         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
        {"metadata": meta("allow-same-namespace"),
         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                  "ingress": [{"from": [{"podSelector": {}}]}],
                  "egress": [{"to": [{"podSelector": {}}]}]}},
        {"metadata": meta("allow-dns"),
         "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                  "egress": [{
                      "to": [{"namespaceSelector": {"matchLabels": {
                                  "kubernetes.io/metadata.name": "kube-system"}},
                              "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                      "ports": [{"protocol": "UDP", "port": 53},
                                {"protocol": "TCP", "port": 53}]}]}},
        {"metadata": meta("allow-internet"),
         "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                  "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                                  "except": collapsed}}]}]}},
    ]


def resource_quota(tenant: TenantSpec) -> Obj:
    # RuntimeClass overhead is added to each pod's usage, so sandbox cost counts here.
    return {"metadata": {"name": "tenant-quota", "namespace": tenant.name},
            "spec": {"hard": dict(tenant.quota)}}


def limit_range(tenant: TenantSpec) -> Obj:
    return {"metadata": {"name": "tenant-limits", "namespace": tenant.name},
            "spec": {"limits": [{"type": "Container", "default": dict(tenant.default_limits),
                                 "defaultRequest": dict(tenant.default_requests)}]}}


def tenant_role(namespace: str) -> Obj:
    """What a tenant may do in its own namespace; nothing cluster-scoped (RuntimeClasses,
    admission policies, namespaces) and no NetworkPolicy/quota edits."""
    return {
        "metadata": {"name": "tenant-admin", "namespace": namespace},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "pods/log", "services", "configmaps",
                                              "secrets", "persistentvolumeclaims", "events"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "replicasets",
                                                  "statefulsets"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        ],
    }


def tenant_role_binding(namespace: str) -> Obj:
    return {
        "metadata": {"name": "tenant-admin", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "tenant-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                      "name": f"tenant:{namespace}"}],
    }


def proof_job(runtime: str) -> Obj:
    """A Job whose log shows the kernel it ran on: a sandbox's, not the node's."""
    return {
        "metadata": {"name": f"sandbox-proof-{runtime}", "namespace": PROOF_NAMESPACE},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "runtimeClassName": runtime,
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [{
                    "name": "proof",
                    "image": PROOF_IMAGE,
                    "command": ["sh", "-c",
                                'echo "kernel-release: $(uname -r)"; dmesg 2>&1 | head -n 20'],
                }],
            }},
        },
    }


def audit_policy() -> Obj:
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            # Who read or changed a secret, never its content.
            {"level": "Metadata", "resources": [{"group": "", "resources": [
                "secrets", "configmaps", "serviceaccounts/token"]}]},
            {"level": "RequestResponse", "resources": [
                {"group": "rbac.authorization.k8s.io"},
                {"group": "admissionregistration.k8s.io"},
                {"group": "node.k8s.io"}]},
            {"level": "Request", "resources": [{"group": "", "resources": [
                "pods/exec", "pods/attach", "pods/portforward"]}]},
            {"level": "None", "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*",
                                                  "/version"]},
            {"level": "Metadata"},
        ],
    }


def encryption_config(key_base64: str) -> Obj:
    """Secrets encrypted at rest in etcd (aescbc; the key is a Pulumi secret)."""
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [{"aescbc": {"keys": [{"name": "key1", "secret": key_base64}]}},
                          {"identity": {}}],
        }],
    }
