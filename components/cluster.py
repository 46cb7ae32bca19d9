"""SandboxedCluster: wires the components and owns the order between them.

Only what must be ordered is: VMs are created in parallel; each node's install starts as soon
as its own VM exists; workers install runtimes while the control plane initialises; worker
joins run in parallel (control-plane joins one at a time, as etcd adds members one by one).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_command import remote

from components.access import NodeAccess, NodeAccessArgs
from components.cni import PodNetwork, PodNetworkArgs
from components.control_plane import ControlPlane, ControlPlaneArgs, cluster_config
from components.guardrails import TenantGuardrails, TenantGuardrailsArgs
from components.hypervisor import Hypervisor, HypervisorArgs, NodeBootDocuments
from components.join import NodeJoin, NodeJoinArgs
from components.node import NodeRuntime, NodeRuntimeArgs
from components.pki import ClusterPki, ClusterPkiArgs
from components.remote import HelperAccess, node_connection
from components.removal import NodeRemoval, NodeRemovalArgs
from components.render.cloudinit import (
    NodeCloudInit,
    StaticNetwork,
    render_meta_data,
    render_network_config,
    render_user_data,
)
from components.render.kubeadm import render_cluster_configuration
from components.sandbox import SandboxClasses, SandboxClassesArgs
from components.spec import ClusterSpec, NodeSpec
from components.spec.transitions import deployed_record
from components.upgrade import NodeUpgrade, NodeUpgradeArgs
from components.workloads import SampleWorkloads, SampleWorkloadsArgs


@dataclass(frozen=True)
class SandboxedClusterArgs:
    spec: ClusterSpec


def boot_documents(spec: ClusterSpec, node: NodeSpec, access: NodeAccess) -> NodeBootDocuments:
    user_data = pulumi.Output.all(
        access.admin_public_key, access.host_private_key(node.name),
        access.host_public_key(node.name),
    ).apply(lambda keys: render_user_data(NodeCloudInit(
        hostname=node.name, admin_user=spec.admin_user, admin_ssh_public_key=keys[0],
        host_key_ed25519_private=keys[1], host_key_ed25519_public=keys[2],
        apt_mirror=spec.mirrors.apt, apt_security_mirror=spec.mirrors.apt_security)))
    network = StaticNetwork(
        mac=node.mac,
        address=ipaddress.IPv4Interface(f"{node.ip}/{spec.network.cidr.prefixlen}"),
        gateway=spec.network.gateway,
        dns=spec.network.dns,
    )
    return NodeBootDocuments(
        user_data=pulumi.Output.secret(user_data),
        meta_data=render_meta_data(f"{spec.stack}-{node.name}", node.name),
        network_config=render_network_config(network),
    )


class SandboxedCluster(pulumi.ComponentResource):
    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, args: SandboxedClusterArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:index:SandboxedCluster", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)

        self.access = NodeAccess("node-access", NodeAccessArgs([n.name for n in spec.nodes]),
                                 opts=child)
        self.pki = ClusterPki("pki", ClusterPkiArgs(
            spec.kubernetes.cluster_name, f"https://{spec.control_plane_endpoint}"), opts=child)
        self.hypervisor = Hypervisor("hypervisor", HypervisorArgs(
            spec, {n.name: boot_documents(spec, n, self.access) for n in spec.nodes}),
            opts=child)

        connections: dict[str, remote.ConnectionArgs] = {
            n.name: node_connection(str(n.ip), spec.admin_user, self.access.admin_private_key,
                                    self.access.host_public_key(n.name))
            for n in spec.nodes
        }
        self.runtimes = {
            n.name: NodeRuntime(f"{n.name}-runtime", NodeRuntimeArgs(
                spec, n, connections[n.name], self.hypervisor.domains[n.name]), opts=child)
            for n in spec.nodes
        }

        first, *other_control_planes = spec.control_plane_nodes
        domains = self.hypervisor.domains
        self.control_plane = ControlPlane("control-plane", ControlPlaneArgs(
            spec, first, connections[first.name], domains[first.name].id,
            self.runtimes[first.name].ready, self.pki,
            self.access.join_token_key.public_key_openssh,
            self.access.maintenance_key.public_key_openssh), opts=child)
        self.token_issuer = HelperAccess(
            "TOKEN_ISSUER", str(first.ip), spec.admin_user,
            self.access.host_public_key(first.name), self.access.join_token_private_key)

        self.joins: dict[str, NodeJoin] = {}
        self.removals: dict[str, NodeRemoval] = {}
        previous: pulumi.CustomResource = self.control_plane.init
        previous_removal: list[pulumi.Resource] = []
        for node in other_control_planes:
            join = self._join(spec, node, connections, [previous])
            previous = join.join
            removal = self._removal(spec, node, first, connections[first.name],
                                    previous_removal)
            previous_removal = [removal.step]
        for node in spec.worker_nodes:
            self._join(spec, node, connections, [])
            self._removal(spec, node, first, connections[first.name], [])
        self._upgrades(spec, first, connections)

        # pulumi-kubernetes decides once, when it is configured, whether the cluster is
        # reachable, and fails every object after an early "no": its kubeconfig therefore
        # carries the control plane's last step, so the engine configures it only once the
        # API server is up (a provider configured at the start of the first `up` finds no VM).
        self.kubernetes_provider = k8s.Provider(
            "kubernetes",
            kubeconfig=pulumi.Output.all(self.pki.kubeconfig, previous.id).apply(
                lambda values: values[0]),
            # Its first request (the API's OpenAPI schema) is heavy for a slow control plane.
            kube_client_settings=(k8s.KubeClientSettingsArgs(
                timeout=spec.kubernetes.api_client_timeout)
                if spec.kubernetes.api_client_timeout else None),
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        on_cluster = pulumi.ResourceOptions(parent=self, providers=[self.kubernetes_provider])
        cluster_ready = [previous]
        self.pod_network = PodNetwork("pod-network", PodNetworkArgs(spec, cluster_ready),
                                      opts=on_cluster)
        self.sandbox_classes = SandboxClasses("sandbox-classes",
                                              SandboxClassesArgs(spec, cluster_ready),
                                              opts=on_cluster)
        self.guardrails = TenantGuardrails("tenant-guardrails", TenantGuardrailsArgs(
            spec, self.sandbox_classes.runtime_classes, cluster_ready), opts=on_cluster)
        pool_nodes_ready = {
            runtime: [self.pod_network.daemonset,
                      *(self.joins[n.name].join for n in spec.worker_nodes
                        if runtime in n.pool.runtimes)]
            for runtime in spec.enabled_sandboxes
        }
        self.samples = SampleWorkloads("samples", SampleWorkloadsArgs(
            spec, self.sandbox_classes.runtime_classes, pool_nodes_ready, cluster_ready),
            opts=on_cluster)

        self.kubeconfig = self.pki.kubeconfig
        # What the next `up` checks its changes against; it resolves (and the stack output is
        # written) only once every node has joined and passed its upgrade step, so an `up`
        # that fails half-way leaves the previous record.
        record = deployed_record(spec)
        self.deployed: pulumi.Output[dict[str, object]] = pulumi.Output.all(
            self.control_plane.init.id, *(j.join.id for j in self.joins.values()),
            *(u.step.id for u in self.upgrades.values()),
        ).apply(lambda _: record)
        self.register_outputs({
            "kubeconfig": self.kubeconfig,
            "endpoint": spec.control_plane_endpoint,
        })

    def _join(self, spec: ClusterSpec, node: NodeSpec,
              connections: dict[str, remote.ConnectionArgs],
              extra: list[pulumi.Resource]) -> NodeJoin:
        join = NodeJoin(f"{node.name}-join", NodeJoinArgs(
            spec, node, connections[node.name], self.hypervisor.domains[node.name].id, self.pki,
            self.token_issuer,
            after=[*self.runtimes[node.name].ready, self.control_plane.token_issuer, *extra]),
            opts=pulumi.ResourceOptions(parent=self))
        self.joins[node.name] = join
        return join

    def _upgrades(self, spec: ClusterSpec, first: NodeSpec,
                  connections: dict[str, remote.ConnectionArgs]) -> None:
        """One chain in kubeadm's order: the first control plane, the others, the workers."""
        helper = HelperAccess("MAINTENANCE", str(first.ip), spec.admin_user,
                              self.access.host_public_key(first.name),
                              self.access.maintenance_private_key)
        self.upgrades: dict[str, NodeUpgrade] = {}
        previous: pulumi.Resource = self.control_plane.init
        for node in (*spec.control_plane_nodes, *spec.worker_nodes):
            worker = not node.pool.is_control_plane
            after = [previous]
            if node is not first:
                after.append(self.joins[node.name].join)
            if worker:
                after.append(self.control_plane.maintenance_helper)
            upgrade = NodeUpgrade(f"{node.name}-upgrade", NodeUpgradeArgs(
                spec, node,
                "first" if node is first else "worker" if worker else "control-plane",
                connections[node.name], self.hypervisor.domains[node.name].id,
                self.runtimes[node.name].upgradable,
                cluster_configuration=(render_cluster_configuration(cluster_config(spec))
                                       if node is first else None),
                helper=helper if worker else None, after=after),
                opts=pulumi.ResourceOptions(parent=self))
            self.upgrades[node.name] = upgrade
            previous = upgrade.step

    def _removal(self, spec: ClusterSpec, node: NodeSpec, first: NodeSpec,
                 first_connection: remote.ConnectionArgs,
                 extra: list[pulumi.Resource]) -> NodeRemoval:
        removal = NodeRemoval(f"{node.name}-removal", NodeRemovalArgs(
            spec, node, first, first_connection, self.hypervisor.domains[node.name].id,
            after=[self.joins[node.name].join, *extra]),
            opts=pulumi.ResourceOptions(parent=self))
        self.removals[node.name] = removal
        return removal
