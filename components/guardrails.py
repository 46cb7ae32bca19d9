"""Tenant guardrails: the admission policies (pods, Services, Secrets), and per tenant a
restricted namespace with default-deny networking, quota, limits and a namespaced role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.render import guardrails as render
from components.spec import ClusterSpec

SKIP_AWAIT = "pulumi.com/skipAwait"


def denied_egress(spec: ClusterSpec) -> list[str]:
    """Where tenant pods may never connect besides the non-public ranges: nodes (kubelet, SSH,
    API server), the libvirt host (the gateway), every pod and Service address (other
    tenants' included; the same tenant's pass the podSelector rules) and the stack's
    network.deniedEgressCidrs."""
    return [str(spec.network.cidr), f"{spec.network.gateway}/32",
            str(spec.kubernetes.pod_cidr), str(spec.kubernetes.service_cidr),
            *(str(n) for n in spec.network.denied_egress)]


@dataclass(frozen=True)
class TenantGuardrailsArgs:
    spec: ClusterSpec
    # The RuntimeClasses the policy names: it must not exist before they do.
    runtime_classes: Mapping[str, pulumi.Resource]
    # The cluster steps the objects need (the control plane's init or last join); the
    # Kubernetes provider itself depends on none of them, so targeted runs work.
    after: Sequence[pulumi.Resource] = ()


class TenantGuardrails(pulumi.ComponentResource):
    namespaces: dict[str, k8s.core.v1.Namespace]

    def __init__(self, name: str, args: TenantGuardrailsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:guardrails:TenantGuardrails", name, None, opts)
        spec = args.spec
        classes = list(spec.enabled_sandboxes)
        after_classes = pulumi.ResourceOptions(
            parent=self, depends_on=[*args.runtime_classes.values(), *args.after])
        self.policies: list[k8s.admissionregistration.v1.ValidatingAdmissionPolicy] = []
        self.bindings: list[k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding] = []
        for policy_doc in render.tenant_policies(classes):
            name = policy_doc["metadata"]["name"]
            short = name.removeprefix("sandboxed-k8s-")
            policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
                short, metadata=policy_doc["metadata"], spec=policy_doc["spec"],
                opts=after_classes)
            binding_doc = render.admission_binding(name)
            self.policies.append(policy)
            self.bindings.append(k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
                short, metadata=binding_doc["metadata"], spec=binding_doc["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy])))

        self.namespaces = {}
        for tenant in spec.tenants:
            # Nothing may be created in it before the policies that guard it are enforced.
            namespace = k8s.core.v1.Namespace(tenant.name, metadata={
                "name": tenant.name,
                "labels": render.tenant_namespace_labels(spec.kubernetes.minor,
                                                         tenant.allow_node_services),
            }, opts=pulumi.ResourceOptions(parent=self, depends_on=self.bindings))
            self.namespaces[tenant.name] = namespace
            inside = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
            for network_policy in render.network_policies(tenant.name, denied_egress(spec)):
                k8s.networking.v1.NetworkPolicy(
                    f"{tenant.name}-{network_policy['metadata']['name']}",
                    metadata=network_policy["metadata"], spec=network_policy["spec"],
                    opts=inside)
            quota = render.resource_quota(tenant)
            # pulumi-kubernetes gives a quota one fixed minute to show its status, which a
            # loaded controller-manager misses (a real `up` failed so). Not waiting is safe:
            # until the status is there, quota admission refuses the namespace's pods.
            quota_metadata: Any = {**quota["metadata"], "annotations": {SKIP_AWAIT: "true"}}
            k8s.core.v1.ResourceQuota(f"{tenant.name}-quota", metadata=quota_metadata,
                                      spec=quota["spec"], opts=inside)
            limits = render.limit_range(tenant)
            k8s.core.v1.LimitRange(f"{tenant.name}-limits", metadata=limits["metadata"],
                                   spec=limits["spec"], opts=inside)
            role = render.tenant_role(tenant.name)
            k8s.rbac.v1.Role(f"{tenant.name}-tenant-admin", metadata=role["metadata"],
                             rules=role["rules"], opts=inside)
            binding = render.tenant_role_binding(tenant.name)
            k8s.rbac.v1.RoleBinding(f"{tenant.name}-tenant-admin",
                                    metadata=binding["metadata"], role_ref=binding["roleRef"],
                                    subjects=binding["subjects"], opts=inside)
        self.register_outputs({"tenants": list(self.namespaces)})
