"""kubeadm init on the first control-plane node, and the join-token issuer every later join
asks for its token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import yaml
from pulumi_command import remote

from components.pki import ClusterPki
from components.remote import script_step
from components.render.guardrails import audit_policy, encryption_config
from components.render.kubeadm import (
    ClusterConfig,
    NodeRegistration,
    render_init_config,
    render_kube_vip_manifest,
)
from components.render.scripts import b64, render_invocation
from components.spec import KUBE_VIP_REPOSITORY, ClusterSpec, NodeSpec

NODE_INTERFACE = "eth0"  # named by our cloud-init network-config


def node_registration(node: NodeSpec) -> NodeRegistration:
    return NodeRegistration(
        name=node.name,
        labels=node.pool.node_labels,
        taints=tuple((t.key, t.value, t.effect) for t in node.pool.node_taints),
        control_plane=node.pool.is_control_plane,
    )


def cluster_config(spec: ClusterSpec) -> ClusterConfig:
    sans = [str(n.ip) for n in spec.control_plane_nodes] + [n.name for n in
                                                            spec.control_plane_nodes]
    if spec.network.control_plane_vip is not None:
        sans.insert(0, str(spec.network.control_plane_vip))
    k8s = spec.kubernetes
    return ClusterConfig(k8s.version, k8s.cluster_name, spec.control_plane_endpoint,
                         str(k8s.pod_cidr), str(k8s.service_cidr), tuple(sans),
                         k8s.image_repository, k8s.etcd_image_tag, k8s.coredns_image_tag,
                         pod_pids_limit=k8s.pod_pids_limit,
                         leader_election=k8s.leader_election, etcd_timers=k8s.etcd_timers)


def kube_vip_manifest(spec: ClusterSpec, kubeconfig: str) -> str:
    assert spec.network.control_plane_vip is not None
    return render_kube_vip_manifest(str(spec.network.control_plane_vip), NODE_INTERFACE,
                                    f"{KUBE_VIP_REPOSITORY}:{spec.kube_vip_version}", kubeconfig,
                                    spec.kubernetes.leader_election)


def apiserver_files(pki: ClusterPki) -> dict[str, pulumi.Input[str]]:
    """Files every control plane's API server reads: encryption at rest, audit policy."""
    return {
        "ENCRYPTION_CONFIG": pki.encryption_key.apply(
            lambda key: yaml.safe_dump(encryption_config(key), sort_keys=False)),
        "AUDIT_POLICY": yaml.safe_dump(audit_policy(), sort_keys=False),
    }


@dataclass(frozen=True)
class ControlPlaneArgs:
    spec: ClusterSpec
    node: NodeSpec
    connection: pulumi.Input[remote.ConnectionArgs]
    machine_id: pulumi.Input[str]  # the node VM's id: a replaced VM runs init again
    node_ready: Sequence[pulumi.Resource]
    pki: ClusterPki
    # The public halves of the keys joining nodes use to ask for a join token, and upgrading
    # workers to have themselves drained and uncordoned.
    join_token_public_key: pulumi.Input[str]
    maintenance_public_key: pulumi.Input[str]


class ControlPlane(pulumi.ComponentResource):
    def __init__(self, name: str, args: ControlPlaneArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:kubeadm:ControlPlane", name, None, opts)
        spec, node = args.spec, args.node
        registration = node_registration(node)
        config = cluster_config(spec)
        init_config = args.pki.join_token.apply(
            lambda token: render_init_config(config, registration, str(node.ip), token,
                                             spec.kubernetes.token_ttl,
                                             spec.kubernetes.control_plane_timeout))
        files: dict[str, pulumi.Input[str]] = {"KUBEADM_CONFIG": init_config,
                                               **args.pki.files(),
                                               **apiserver_files(args.pki)}
        params: dict[str, str] = {}
        if spec.uses_vip:
            files["KUBE_VIP_BOOTSTRAP"] = kube_vip_manifest(
                spec, "/etc/kubernetes/super-admin.conf")
            files["KUBE_VIP"] = kube_vip_manifest(spec, "/etc/kubernetes/admin.conf")
            params["CLUSTER_ENDPOINT"] = spec.control_plane_endpoint
        self.init = script_step(f"{node.name}-kubeadm-init", "kubeadm-init.sh", args.connection,
                                params, files=files, parent=self, depends_on=args.node_ready,
                                machine_id=args.machine_id, sensitive=True)
        # Joins ask this issuer for a fresh token when they run, instead of all sharing one
        # created ahead of time: a token lives tokenTtl, and nothing tells the engine to create
        # a new one when a join that failed is retried later (the join itself runs again; a
        # token step with unchanged inputs does not). The issuer's key can run nothing else.
        issuer = render_invocation("issue-join-token.sh",
                                   {"TOKEN_TTL": spec.kubernetes.token_ttl})
        self.token_issuer = self._behind_own_key(args, "token-issuer", "ISSUER", issuer,
                                                 args.join_token_public_key)
        # Workers hold no admin credentials: their upgrade step has this helper drain and
        # uncordon them (the node it acts on is the caller's address; no other).
        nodes = "".join(f"{n.ip} {n.name}\n" for n in spec.worker_nodes)
        helper = render_invocation("node-maintenance.sh", {
            "NODES_B64": b64(nodes), "DRAIN_TIMEOUT": spec.kubernetes.drain_timeout})
        self.maintenance_helper = self._behind_own_key(args, "maintenance-helper", "HELPER",
                                                       helper, args.maintenance_public_key)
        self.register_outputs({"endpoint": spec.control_plane_endpoint})

    def _behind_own_key(self, args: ControlPlaneArgs, step: str, prefix: str,
                        program: pulumi.Input[str],
                        public_key: pulumi.Input[str]) -> remote.Command:
        """`<step>.sh` installs `program` on the first control plane behind an SSH key that may
        run it alone, from the node network only (parameters `<PREFIX>_PUBLIC_KEY`, file
        `<PREFIX>`)."""
        spec = args.spec
        return script_step(
            f"{args.node.name}-{step}", f"{step}.sh", args.connection,
            {f"{prefix}_PUBLIC_KEY": pulumi.Output.from_input(public_key).apply(str.strip),
             "ADMIN_USER": spec.admin_user, "ALLOWED_FROM": str(spec.network.cidr)},
            files={prefix: program}, machine_id=args.machine_id, parent=self,
            depends_on=[self.init])
