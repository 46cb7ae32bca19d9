"""kubeadm join for one node: a worker, or (HA) a further control plane."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.control_plane import apiserver_files, kube_vip_manifest, node_registration
from components.pki import ClusterPki
from components.remote import HelperAccess, script_step
from components.render.kubeadm import JOIN_TOKEN_PLACEHOLDER, render_join_config
from components.spec import ClusterSpec, NodeSpec


@dataclass(frozen=True)
class NodeJoinArgs:
    spec: ClusterSpec
    node: NodeSpec
    connection: pulumi.Input[remote.ConnectionArgs]
    machine_id: pulumi.Input[str]  # the node VM's id: a replaced VM joins again
    pki: ClusterPki
    token_issuer: HelperAccess  # the first control plane's join-token issuer
    # The node's own runtime install and the token issuer (and, for HA control planes, the
    # previous control-plane join: etcd members are added one at a time).
    after: Sequence[pulumi.Resource]


class NodeJoin(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodeJoinArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:kubeadm:NodeJoin", name, None, opts)
        spec, node, pki = args.spec, args.node, args.pki
        registration = node_registration(node)
        endpoint = spec.control_plane_endpoint
        join_config = pki.ca_cert_hash.apply(
            lambda ca_hash: render_join_config(registration, endpoint, JOIN_TOKEN_PLACEHOLDER,
                                               ca_hash, str(node.ip),
                                               spec.kubernetes.control_plane_timeout))
        files: dict[str, pulumi.Input[str]] = {"KUBEADM_JOIN_CONFIG": join_config,
                                               **args.token_issuer.files()}
        params = {"NODE_NAME": node.name,
                  "CONTROL_PLANE": "1" if node.pool.is_control_plane else "0",
                  "TOKEN_PLACEHOLDER": JOIN_TOKEN_PLACEHOLDER, **args.token_issuer.params()}
        if node.pool.is_control_plane:
            files.update(pki.files())
            files.update(apiserver_files(pki))
            if spec.uses_vip:
                files["KUBE_VIP"] = kube_vip_manifest(spec, "/etc/kubernetes/admin.conf")
        self.join = script_step(f"{node.name}-kubeadm-join", "kubeadm-join.sh", args.connection,
                                params, files=files, parent=self, depends_on=args.after,
                                machine_id=args.machine_id, sensitive=True)
        self.register_outputs({})
