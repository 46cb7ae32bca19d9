"""Per node: the remote steps that turn a booted VM into a node ready for kubeadm.

wait for cloud-init -> preflight -> (pod firewall | containerd+runc+CNI | gVisor | Kata |
kube tools, in parallel) -> containerd config (needs every runtime it names, and the
firewall) -> ready.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.guardrails import denied_egress
from components.remote import script_step
from components.render.containerd import (
    config_version_for,
    render_containerd_config,
    render_registry_hosts,
    render_runsc_toml,
)
from components.render.firewall import SystemPodDestination, render_ruleset, render_unit
from components.render.guardrails import NON_PUBLIC_RANGES
from components.spec import ClusterSpec, NodeSpec
from components.spec.artifacts import image_registry, stack_images

MIN_FREE_GIB = 5


@dataclass(frozen=True)
class NodeRuntimeArgs:
    spec: ClusterSpec
    node: NodeSpec
    connection: pulumi.Input[remote.ConnectionArgs]
    # The node's VM. Every step carries its id among its inputs (not only as an ordering
    # dependency): a replaced VM changes the id, and that re-runs the whole chain on it.
    domain: pulumi.CustomResource


def artifact_params(prefix: str, artifact_version: str, checksum: str,
                    base_url: str) -> dict[str, str]:
    algorithm, _, digest = checksum.partition(":")
    return {f"{prefix}_VERSION": artifact_version, f"{prefix}_{algorithm.upper()}": digest,
            f"{prefix}_BASE_URL": base_url}


def containerd_configs(spec: ClusterSpec, node: NodeSpec) -> dict[str, str]:
    """Both schema versions; the node script installs the one its containerd reads."""
    # Validates the pinned version is one we can render for (raises otherwise).
    config_version_for(spec.containerd.version)
    return {f"CONTAINERD_CONFIG_V{v}": render_containerd_config(
                v, node.handlers, sandbox_image=spec.kubernetes.pause_image)
            for v in (2, 3)}


def registry_hosts(spec: ClusterSpec) -> str:
    """Lines "<registry> <hosts.toml, base64>" for every upstream registry with a mirror."""
    lines = []
    for registry in sorted({image_registry(i) for i in stack_images(spec)}
                           | set(spec.mirrors.registries)):
        mirror = spec.mirrors.registry_host(registry)
        if mirror:
            hosts = render_registry_hosts(registry, mirror).encode()
            lines.append(f"{registry} {base64.b64encode(hosts).decode()}\n")
    return "".join(lines)


def firewall_files(spec: ClusterSpec, node: NodeSpec) -> dict[str, str]:
    """The node's static pod firewall. Nodes that can run no tenant pod (control planes, plain
    pools: tenant pods need a sandbox) let system pods such as CoreDNS reach the API servers
    and the upstream DNS; sandbox nodes make no exception at all."""
    exceptions: list[SystemPodDestination] = []
    if not node.pool.runtimes:
        exceptions += [SystemPodDestination(n.ip, "tcp", 6443)
                       for n in spec.control_plane_nodes]
        exceptions += [SystemPodDestination(ipaddress.IPv4Address(d), proto, 53)
                       for d in spec.network.dns for proto in ("udp", "tcp")]
    denied = [*NON_PUBLIC_RANGES, *denied_egress(spec)]
    denied.remove(str(spec.kubernetes.pod_cidr))
    return {"FIREWALL_RULESET": render_ruleset(str(spec.kubernetes.pod_cidr), denied,
                                               exceptions),
            "FIREWALL_UNIT": render_unit()}


class NodeRuntime(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodeRuntimeArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:node:NodeRuntime", name, None, opts)
        spec, node, conn = args.spec, args.node, args.connection
        n = node.name

        def step(suffix: str, script: str, params: dict[str, str],
                 after: list[pulumi.Resource], files: dict[str, str] | None = None
                 ) -> remote.Command:
            return script_step(f"{n}-{suffix}", script, conn, params, parent=self,
                               depends_on=after, files=files, machine_id=args.domain.id)

        self.wait = step("wait-cloud-init", "wait-cloud-init.sh", {}, [args.domain])
        self.preflight = step("preflight", "preflight.sh", {
            "REQUIRE_GVISOR": "1" if "gvisor" in node.pool.runtimes else "0",
            "REQUIRE_KVM": "1" if spec.needs_kvm(node.pool) else "0",
            "MIN_FREE_GIB": str(MIN_FREE_GIB),
        }, [self.wait])
        self.firewall = step("pod-firewall", "node-firewall.sh", {}, [self.preflight],
                             firewall_files(spec, node))
        self.containerd = step("containerd", "install-containerd.sh", {
            **artifact_params("CONTAINERD", spec.containerd.version, spec.containerd.checksum,
                              spec.containerd.base_url),
            **artifact_params("RUNC", spec.runc.version, spec.runc.checksum, spec.runc.base_url),
            **artifact_params("CNI_PLUGINS", spec.cni_plugins.version, spec.cni_plugins.checksum,
                              spec.cni_plugins.base_url),
        }, [self.preflight])
        runtime_steps: list[pulumi.Resource] = [self.containerd]
        self.gvisor: remote.Command | None = None
        self.kata: remote.Command | None = None
        if "gvisor" in node.pool.runtimes:
            g = spec.gvisor
            self.gvisor = step("gvisor", "install-gvisor.sh", {
                "GVISOR_RELEASE": g.release, "GVISOR_BASE_URL": g.base_url,
                "GVISOR_LAYOUT": g.layout,
                "RUNSC_SHA512": g.checksums.get("runsc", ""),
                "SHIM_SHA512": g.checksums.get("containerd-shim-runsc-v1", ""),
            }, [self.preflight])
            runtime_steps.append(self.gvisor)
        if "kata" in node.pool.runtimes:
            k = spec.kata.artifact
            self.kata = step("kata", "install-kata.sh",
                             artifact_params("KATA", k.version, k.checksum, k.base_url),
                             [self.preflight])
            runtime_steps.append(self.kata)

        files = {**containerd_configs(spec, node), "REGISTRY_HOSTS": registry_hosts(spec)}
        if "gvisor" in node.pool.runtimes:
            files["RUNSC_TOML"] = render_runsc_toml(spec.gvisor.platform, spec.gvisor.flags)
        # containerd requires the firewall's unit: it never runs a pod without the table.
        self.containerd_config = step("containerd-config", "configure-containerd.sh",
                                      {"HANDLERS": " ".join(node.handlers)},
                                      [*runtime_steps, self.firewall], files)
        k8s = spec.kubernetes
        self.kubernetes_tools = step("kubernetes-tools", "install-kubernetes.sh", {
            "K8S_VERSION": k8s.version, "K8S_BASE_URL": k8s.kubeadm.base_url,
            "KUBEADM_SHA256": k8s.kubeadm.checksum.partition(":")[2],
            "KUBELET_SHA256": k8s.kubelet.checksum.partition(":")[2],
            "KUBECTL_SHA256": k8s.kubectl.checksum.partition(":")[2],
            **artifact_params("CRICTL", spec.crictl.version, spec.crictl.checksum,
                              spec.crictl.base_url),
        }, [self.preflight])
        # What kubeadm init/join must wait for: every runtime installed and configured.
        self.ready: list[pulumi.Resource] = [self.containerd_config, self.kubernetes_tools]
        # The installs a node that runs pods leaves to its upgrade step (drained first), in the
        # order that step runs them again; kubelet and kubectl last.
        self.upgradable: dict[str, remote.Command] = {
            "CONTAINERD": self.containerd,
            **({"GVISOR": self.gvisor} if self.gvisor else {}),
            **({"KATA": self.kata} if self.kata else {}),
            "CONTAINERD_CONFIG": self.containerd_config,
            "KUBERNETES": self.kubernetes_tools,
        }
        self.register_outputs({})
