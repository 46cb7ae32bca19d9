"""What a node's leaving the cluster runs, declared while it is in it: a step on the first
control plane whose `delete` drains the node, removes its etcd member (control planes) and
deletes its Node object.

The engine deletes a resource that left the program after everything that depends on it, so
with the step depending on the node's join, removing a node from its pool runs the step before
the node's VM is destroyed. It carries the node's VM id among its triggers: a replaced VM
(`deleteBeforeReplace`) takes its dependents that would be replaced down first, so the old
machine leaves the cluster (and etcd) before the new one joins under the same name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.render.scripts import REMOTE_RUNNER, render_invocation
from components.spec import ClusterSpec, NodeSpec


@dataclass(frozen=True)
class NodeRemovalArgs:
    spec: ClusterSpec
    node: NodeSpec
    first_control_plane: NodeSpec  # where kubectl and etcdctl run, with the admin kubeconfig
    connection: pulumi.Input[remote.ConnectionArgs]  # to the first control plane
    machine_id: pulumi.Input[str]  # the leaving node's VM
    # The node's join, and (control planes) the removal of the control plane joined before it,
    # so etcd members leave one at a time, the last joined first.
    after: Sequence[pulumi.Resource]


def removal_params(spec: ClusterSpec, node: NodeSpec, first: NodeSpec) -> dict[str, str]:
    return {"NODE_NAME": node.name, "NODE_IP": str(node.ip),
            "CONTROL_PLANE": "1" if node.pool.is_control_plane else "0",
            "ETCD_POD": f"etcd-{first.name}", "DRAIN_TIMEOUT": spec.kubernetes.drain_timeout}


class NodeRemoval(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodeRemovalArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:kubeadm:NodeRemoval", name, None, opts)
        node, first = args.node, args.first_control_plane
        # Nothing runs on create; the engine keeps stdin with the state and runs `delete`
        # with the stdin of the last `up` that declared the step.
        self.step = remote.Command(
            f"{first.name}-remove-{node.name}",
            connection=args.connection,
            delete=REMOTE_RUNNER,
            stdin=render_invocation("remove-node.sh", removal_params(args.spec, node, first)),
            triggers=[args.machine_id],
            logging=remote.Logging.STDOUT_AND_STDERR,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.register_outputs({})
