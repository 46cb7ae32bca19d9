"""Sample sandboxed workloads: one nginx pod per enabled sandbox class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.render.guardrails import PROOF_NAMESPACE, proof_job
from components.spec import SAMPLE_IMAGE, ClusterSpec

SAMPLE_NAMESPACE = "default"


def sample_name(runtime: str) -> str:
    return f"nginx-{runtime}"


@dataclass(frozen=True)
class SampleWorkloadsArgs:
    spec: ClusterSpec
    runtime_classes: Mapping[str, pulumi.Resource]
    # Per sandbox runtime: what must exist on the nodes its class selects (their joins, which
    # follow their runtime installs).
    pool_nodes_ready: Mapping[str, Sequence[pulumi.Resource]]
    # The cluster steps the objects need (the control plane's init or last join); the
    # Kubernetes provider itself depends on none of them, so targeted runs work.
    after: Sequence[pulumi.Resource] = ()


class SampleWorkloads(pulumi.ComponentResource):
    pods: dict[str, k8s.core.v1.Pod]

    def __init__(self, name: str, args: SampleWorkloadsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:workloads:SampleWorkloads", name, None, opts)
        self.pods = {}
        for runtime in args.spec.enabled_sandboxes:
            pod_name = sample_name(runtime)
            self.pods[runtime] = k8s.core.v1.Pod(
                pod_name,
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=pod_name, namespace=SAMPLE_NAMESPACE,
                    labels={"app": "nginx", "sandboxed-k8s.io/sample": runtime}),
                spec=k8s.core.v1.PodSpecArgs(
                    runtime_class_name=runtime,
                    automount_service_account_token=False,
                    containers=[k8s.core.v1.ContainerArgs(
                        name="nginx", image=SAMPLE_IMAGE,
                        ports=[k8s.core.v1.ContainerPortArgs(container_port=80)])],
                ),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[args.runtime_classes[runtime], *args.after,
                                *args.pool_nodes_ready.get(runtime, ())]),
            )
        # Proof Jobs: their logs show the kernel the pod really ran on (`verify` reads them).
        self.proof_namespace = k8s.core.v1.Namespace(PROOF_NAMESPACE, metadata={
            "name": PROOF_NAMESPACE,
            "labels": {"pod-security.kubernetes.io/enforce": "baseline"},
        }, opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)))
        self.proof_jobs: dict[str, k8s.batch.v1.Job] = {}
        for runtime in args.spec.enabled_sandboxes:
            job = proof_job(runtime)
            self.proof_jobs[runtime] = k8s.batch.v1.Job(
                job["metadata"]["name"], metadata=job["metadata"], spec=job["spec"],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[self.proof_namespace, args.runtime_classes[runtime],
                                *args.pool_nodes_ready.get(runtime, ())]))
        self.register_outputs({"pods": list(self.pods), "proof_jobs": list(self.proof_jobs)})
