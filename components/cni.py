"""The pod network: Flannel (VXLAN) declared as typed Kubernetes resources.

Typed resources rather than a manifest URL: the objects show in `pulumi preview` and are
checked against the Kubernetes schema; the images are pinned by the stack's cni config.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.render.containerd import NRI_SOCKET
from components.spec import ClusterSpec

NAMESPACE = "kube-flannel"
NRI_DIR = posixpath.dirname(NRI_SOCKET)
CNI_CONFIG = {
    "name": "cbr0",
    "cniVersion": "0.3.1",
    "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


def api_server_env(spec: ClusterSpec) -> list[dict[str, str]]:
    """The API server's own address for the pod network's agents, in place of the `kubernetes`
    Service's, which kube-proxy translates only once it runs and has synced: the agents that
    build the pod network must not wait for Service routing (on a loaded node, Flannel
    crash-looped on `10.96.0.1:443: network is unreachable` until its DaemonSet timed out).
    Set in the container, these override the Service variables the kubelet injects."""
    host, _, port = spec.control_plane_endpoint.rpartition(":")
    return [{"name": "KUBERNETES_SERVICE_HOST", "value": host},
            {"name": "KUBERNETES_SERVICE_PORT", "value": port}]


@dataclass(frozen=True)
class PodNetworkArgs:
    spec: ClusterSpec
    # The cluster steps the objects need (the control plane's init or last join); the
    # Kubernetes provider itself depends on none of them, so targeted runs work.
    after: Sequence[pulumi.Resource] = ()


class PodNetwork(pulumi.ComponentResource):
    def __init__(self, name: str, args: PodNetworkArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:cni:PodNetwork", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.after))
        meta = k8s.meta.v1.ObjectMetaArgs
        namespace = k8s.core.v1.Namespace("kube-flannel", metadata=meta(
            name=NAMESPACE,
            labels={"pod-security.kubernetes.io/enforce": "privileged"},
        ), opts=child)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        account = k8s.core.v1.ServiceAccount("flannel", metadata=meta(
            name="flannel", namespace=NAMESPACE), opts=in_ns)
        role = k8s.rbac.v1.ClusterRole("flannel", metadata=meta(name="flannel"), rules=[
            k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=["get"]),
            k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["nodes"],
                                       verbs=["get", "list", "watch"]),
            k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["nodes/status"],
                                       verbs=["patch"]),
        ], opts=child)
        binding = k8s.rbac.v1.ClusterRoleBinding(
            "flannel", metadata=meta(name="flannel"),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io",
                                             kind="ClusterRole", name="flannel"),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name="flannel",
                                              namespace=NAMESPACE)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, account]))
        net_conf = {"Network": str(spec.kubernetes.pod_cidr), "EnableNFTables": False,
                    "Backend": {"Type": "vxlan"}}
        config = k8s.core.v1.ConfigMap("kube-flannel-cfg", metadata=meta(
            name="kube-flannel-cfg", namespace=NAMESPACE, labels={"app": "flannel"}), data={
            "cni-conf.json": json.dumps(CNI_CONFIG, indent=2),
            "net-conf.json": json.dumps(net_conf, indent=2),
        }, opts=in_ns)

        registry = spec.cni.image_registry
        flannel_image = f"{registry}/flannel:{spec.cni.flannel_version}"
        plugin_image = f"{registry}/flannel-cni-plugin:{spec.cni.flannel_cni_plugin_version}"
        host = k8s.core.v1.HostPathVolumeSourceArgs
        mount = k8s.core.v1.VolumeMountArgs
        env_from_field = k8s.core.v1.EnvVarSourceArgs
        labels = {"app": "flannel", "k8s-app": "flannel"}
        self.daemonset = k8s.apps.v1.DaemonSet(
            "kube-flannel-ds",
            metadata=meta(name="kube-flannel-ds", namespace=NAMESPACE, labels=labels),
            spec=k8s.apps.v1.DaemonSetSpecArgs(
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": "flannel"}),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=meta(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        host_network=True,
                        priority_class_name="system-node-critical",
                        service_account_name="flannel",
                        # Every node needs the pod network, sandbox pools included.
                        tolerations=[k8s.core.v1.TolerationArgs(operator="Exists",
                                                                effect="NoSchedule")],
                        init_containers=[
                            k8s.core.v1.ContainerArgs(
                                name="install-cni-plugin", image=plugin_image,
                                command=["cp"], args=["-f", "/flannel", "/opt/cni/bin/flannel"],
                                volume_mounts=[mount(name="cni-plugin",
                                                     mount_path="/opt/cni/bin")]),
                            k8s.core.v1.ContainerArgs(
                                name="install-cni", image=flannel_image, command=["cp"],
                                args=["-f", "/etc/kube-flannel/cni-conf.json",
                                      "/etc/cni/net.d/10-flannel.conflist"],
                                volume_mounts=[mount(name="cni", mount_path="/etc/cni/net.d"),
                                               mount(name="flannel-cfg",
                                                     mount_path="/etc/kube-flannel/")]),
                        ],
                        containers=[k8s.core.v1.ContainerArgs(
                            name="kube-flannel", image=flannel_image,
                            command=["/opt/bin/flanneld"],
                            args=["--ip-masq", "--kube-subnet-mgr"],
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests={"cpu": "100m", "memory": "50Mi"}),
                            security_context=k8s.core.v1.SecurityContextArgs(
                                privileged=False,
                                capabilities=k8s.core.v1.CapabilitiesArgs(
                                    add=["NET_ADMIN", "NET_RAW"])),
                            env=[
                                k8s.core.v1.EnvVarArgs(name="POD_NAME", value_from=env_from_field(
                                    field_ref=k8s.core.v1.ObjectFieldSelectorArgs(
                                        field_path="metadata.name"))),
                                k8s.core.v1.EnvVarArgs(
                                    name="POD_NAMESPACE", value_from=env_from_field(
                                        field_ref=k8s.core.v1.ObjectFieldSelectorArgs(
                                            field_path="metadata.namespace"))),
                                k8s.core.v1.EnvVarArgs(name="EVENT_QUEUE_DEPTH", value="5000"),
                                *(k8s.core.v1.EnvVarArgs(name=env["name"], value=env["value"])
                                  for env in api_server_env(spec)),
                            ],
                            volume_mounts=[
                                mount(name="run", mount_path="/run/flannel"),
                                mount(name="flannel-cfg", mount_path="/etc/kube-flannel/"),
                                mount(name="xtables-lock", mount_path="/run/xtables.lock"),
                            ],
                        )],
                        volumes=[
                            k8s.core.v1.VolumeArgs(name="run", host_path=host(path="/run/flannel")),
                            k8s.core.v1.VolumeArgs(name="cni-plugin",
                                                   host_path=host(path="/opt/cni/bin")),
                            k8s.core.v1.VolumeArgs(name="cni",
                                                   host_path=host(path="/etc/cni/net.d")),
                            k8s.core.v1.VolumeArgs(
                                name="flannel-cfg",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                    name="kube-flannel-cfg")),
                            k8s.core.v1.VolumeArgs(name="xtables-lock", host_path=host(
                                path="/run/xtables.lock", type="FileOrCreate")),
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[config, binding]),
        )
        self.network_policy = self._network_policy_enforcer(spec, args.after)
        self.register_outputs({"image": flannel_image})

    def _network_policy_enforcer(self, spec: ClusterSpec,
                                 after: Sequence[pulumi.Resource]) -> k8s.apps.v1.DaemonSet:
        """Flannel moves packets but ignores NetworkPolicy: kube-network-policies enforces it
        on every node (nfqueue on the host, so sandboxed pods are covered too).

        Flags of v1.x, passed explicitly rather than trusted as defaults: `--fail-open=false`
        queues without nftables' bypass, so while it runs a packet it cannot judge is dropped
        (it still removes its table when it stops: the node's static firewall, installed by
        node-firewall.sh, is what holds then); NRI on, so a pod's IPs come from containerd as
        the sandbox is created instead of from the API after the pod starts; strict mode, so
        a changed policy also cuts established connections."""
        meta = k8s.meta.v1.ObjectMetaArgs
        child = pulumi.ResourceOptions(parent=self, depends_on=list(after))
        name = "kube-network-policies"
        account = k8s.core.v1.ServiceAccount(name, metadata=meta(
            name=name, namespace="kube-system"), opts=child)
        role = k8s.rbac.v1.ClusterRole(name, metadata=meta(name=name), rules=[
            k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods", "namespaces",
                                                                  "nodes"],
                                       verbs=["list", "watch"]),
            k8s.rbac.v1.PolicyRuleArgs(api_groups=["networking.k8s.io"],
                                       resources=["networkpolicies"], verbs=["list", "watch"]),
        ], opts=child)
        binding = k8s.rbac.v1.ClusterRoleBinding(
            name, metadata=meta(name=name),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io",
                                             kind="ClusterRole", name=name),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=name,
                                              namespace="kube-system")],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, account]))
        labels = {"app": name}
        # In the API's own field names; passed through as they are.
        daemonset: Any = {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostNetwork": True,
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": name,
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"},
                                    {"operator": "Exists", "effect": "NoExecute"}],
                    "containers": [{
                        "name": name,
                        "image": spec.cni.network_policy_image,
                        "args": ["/bin/netpol", "--hostname-override=$(MY_NODE_NAME)",
                                 "--fail-open=false", "--disable-nri=false",
                                 "--strict-mode=true", "--v=2"],
                        "env": [{"name": "MY_NODE_NAME", "valueFrom": {
                            "fieldRef": {"fieldPath": "spec.nodeName"}}},
                                *api_server_env(spec)],
                        "resources": {"requests": {"cpu": "50m", "memory": "50Mi"}},
                        "securityContext": {"privileged": True, "capabilities": {
                            "add": ["NET_ADMIN"]}},
                        "volumeMounts": [
                            {"name": "lib-modules", "mountPath": "/lib/modules",
                             "readOnly": True},
                            # containerd's NRI socket, and the pods' network namespaces the
                            # NRI plugin reads addresses from.
                            {"name": "nri-plugin", "mountPath": NRI_DIR},
                            {"name": "netns", "mountPath": "/var/run/netns",
                             "mountPropagation": "HostToContainer"},
                        ],
                    }],
                    "volumes": [
                        {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                        {"name": "nri-plugin", "hostPath": {"path": NRI_DIR}},
                        {"name": "netns", "hostPath": {"path": "/var/run/netns"}},
                    ],
                },
            },
        }
        return k8s.apps.v1.DaemonSet(
            name, metadata=meta(name=name, namespace="kube-system", labels=labels),
            spec=daemonset, opts=pulumi.ResourceOptions(parent=self, depends_on=[binding]))
