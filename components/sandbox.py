"""One RuntimeClass per enabled sandbox, scheduling exactly onto the pools that run it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.spec import (
    SANDBOX_HANDLERS,
    SANDBOX_TAINT_EFFECT,
    SANDBOX_TAINT_KEY,
    SANDBOX_TAINT_VALUE,
    ClusterSpec,
    sandbox_label,
)


def overhead(spec: ClusterSpec, runtime: str) -> dict[str, str]:
    if runtime == "gvisor":
        return {"cpu": spec.gvisor.overhead_cpu, "memory": spec.gvisor.overhead_memory}
    return {"cpu": spec.kata.overhead_cpu, "memory": spec.kata.overhead_memory}


@dataclass(frozen=True)
class SandboxClassesArgs:
    spec: ClusterSpec
    # The cluster steps the objects need (the control plane's init or last join); the
    # Kubernetes provider itself depends on none of them, so targeted runs work.
    after: Sequence[pulumi.Resource] = ()


class SandboxClasses(pulumi.ComponentResource):
    runtime_classes: dict[str, k8s.node.v1.RuntimeClass]

    def __init__(self, name: str, args: SandboxClassesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:sandbox:SandboxClasses", name, None, opts)
        self.runtime_classes = {}
        for runtime in args.spec.enabled_sandboxes:
            self.runtime_classes[runtime] = k8s.node.v1.RuntimeClass(
                runtime,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=runtime),
                handler=SANDBOX_HANDLERS[runtime],
                # Counted by the scheduler, the pod cgroup and ResourceQuota.
                overhead=k8s.node.v1.OverheadArgs(pod_fixed=overhead(args.spec, runtime)),
                scheduling=k8s.node.v1.SchedulingArgs(
                    node_selector={sandbox_label(runtime): "true"},
                    tolerations=[k8s.core.v1.TolerationArgs(
                        key=SANDBOX_TAINT_KEY, operator="Equal", value=SANDBOX_TAINT_VALUE,
                        effect=SANDBOX_TAINT_EFFECT)],
                ),
                # The handler is immutable upstream: a change must replace the object.
                opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["handler"],
                                            delete_before_replace=True,
                                            depends_on=list(args.after)),
            )
        self.register_outputs({"classes": list(self.runtime_classes)})
