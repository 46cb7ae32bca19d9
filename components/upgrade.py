"""One node's upgrade step: when a pinned version differs from what the node runs, it follows
kubeadm's procedure on that node (upgrade-node.sh): control plane first, then the node
drained, its runtimes and kubelet replaced, uncordoned. The steps form one chain, in kubeadm's
order: the first control plane, the other control planes, then the workers one at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.remote import HelperAccess, script_step
from components.render.kubeadm import render_upgrade_config, render_upgrade_health_check_job
from components.spec import ClusterSpec, NodeSpec


@dataclass(frozen=True)
class NodeUpgradeArgs:
    spec: ClusterSpec
    node: NodeSpec
    role: str  # first | control-plane | worker
    connection: pulumi.Input[remote.ConnectionArgs]
    machine_id: pulumi.Input[str]
    # The node's install steps, run again (drained) when their pins changed: NAME -> step.
    installs: Mapping[str, remote.Command]
    # The first control plane: the ClusterConfiguration kubeadm upgrades to. Workers: the
    # helper that drains and uncordons them.
    cluster_configuration: str | None = None
    helper: HelperAccess | None = None
    # The node's join (or init), and the upgrade before it in the chain.
    after: Sequence[pulumi.Resource] = ()


class NodeUpgrade(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodeUpgradeArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:kubeadm:NodeUpgrade", name, None, opts)
        spec, node = args.spec, args.node
        k8s = spec.kubernetes
        params: dict[str, pulumi.Input[str]] = {
            "NODE_NAME": node.name, "ROLE": args.role, "K8S_VERSION": k8s.version,
            "K8S_BASE_URL": k8s.kubeadm.base_url,
            "KUBEADM_SHA256": k8s.kubeadm.checksum.partition(":")[2],
            "DRAIN_TIMEOUT": k8s.drain_timeout, "STEPS": " ".join(args.installs),
        }
        # Exactly what the install steps send (their stdin): the same script, the same pins.
        files: dict[str, pulumi.Input[str]] = {
            f"STEP_{step_name}": step.stdin.apply(lambda text: text or "")
            for step_name, step in args.installs.items()}
        files["UPGRADE_CONFIGURATION"] = render_upgrade_config(k8s.version,
                                                              k8s.control_plane_timeout)
        if args.cluster_configuration is not None:
            files["CLUSTER_CONFIGURATION"] = args.cluster_configuration
            files["HEALTH_CHECK_JOB"] = render_upgrade_health_check_job(k8s.pause_image)
            params["HEALTH_CHECK_TIMEOUT"] = k8s.control_plane_timeout
        if args.helper is not None:
            params.update(args.helper.params())
            files.update(args.helper.files())
        self.step = script_step(f"{node.name}-upgrade", "upgrade-node.sh", args.connection,
                                params, files=files, parent=self, depends_on=args.after,
                                machine_id=args.machine_id)
        self.register_outputs({})
