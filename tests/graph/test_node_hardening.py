"""What the graph hands the hypervisor and each node for the tenant escape routes that a node
or the hypervisor decides: private volumes, the static pod firewall before containerd and
kubeadm, runsc in the pod's cgroup, the policy enforcer's flags and the kubelet's PID limit."""

from __future__ import annotations

import base64
import tomllib
from typing import Any

from components.render.firewall import render_unit
from components.render.volumes import PRIVATE_VOLUME_XSLT
from tests.graph.harness import Graph, fake_state
from tests.graph.test_graph import NODES, command, script_params, shipped_yaml

DAEMONSET = "kubernetes:apps/v1:DaemonSet"


def shipped(graph: Graph, step: str, param: str) -> str:
    return base64.b64decode(script_params(command(graph, step))[param]).decode()


def test_every_volume_is_created_private(graph: Graph) -> None:
    volumes = graph.of_type("libvirt:index/volume:Volume")
    assert volumes
    for volume in volumes:
        assert volume.inputs["xml"] == {"xslt": PRIVATE_VOLUME_XSLT}, volume.name


def test_every_node_boots_from_a_private_seed_built_on_this_machine(graph: Graph) -> None:
    # The provider's CloudInitDisk is always 0644 and would hold the node's SSH host key.
    assert not graph.of_type("libvirt:index/cloudInitDisk:CloudInitDisk")
    seeds = graph.seed_images()
    for domain in graph.of_type("libvirt:index/domain:Domain"):
        node = domain.name
        volume = graph.named(f"{node}-seed", "libvirt:index/volume:Volume")
        assert volume.inputs["format"] == "iso"  # as libvirt reads it back
        assert volume.inputs["source"] == fake_state(
            "command:local:Command", seeds[node].name, {})["stdout"].strip()
        assert seeds[node].urn in volume.property_dependencies["source"]
        assert f"{volume.name}-id" in [d["volumeId"] for d in domain.inputs["disks"]]
        assert "cloudinit" not in domain.inputs
        assert seeds[node].inputs["environment"]["SEED_NAME"] == domain.inputs["name"] + "-seed"


def test_every_node_loads_the_pod_firewall_before_containerd_and_kubeadm(
        graph: Graph, stack: str) -> None:
    for node, pool in NODES[stack].items():
        firewall = command(graph, f"{node}-pod-firewall")
        assert graph.depends_on(firewall, command(graph, f"{node}-preflight"))
        assert graph.depends_on(command(graph, f"{node}-containerd-config"), firewall)
        joins = [r for r in graph.of_type("command:remote:Command")
                 if r.name in (f"{node}-kubeadm-init", f"{node}-kubeadm-join")]
        assert joins and all(graph.depends_on(j, firewall) for j in joins)
        ruleset = shipped(graph, f"{node}-pod-firewall", "FIREWALL_RULESET_B64")
        assert shipped(graph, f"{node}-pod-firewall", "FIREWALL_UNIT_B64") == render_unit()
        assert "ip saddr 10.244.0.0/16 jump pod_to_node" in ruleset
        assert "ip daddr 10.244.0.0/16 accept" in ruleset
        # Only nodes that can host no tenant pod let system pods reach the API and DNS.
        sandbox_pool = pool in ("gvisor", "kata")
        assert ("system_pod_destinations" in ruleset) is not sandbox_pool, node


def test_gvisor_nodes_put_runsc_in_the_pods_systemd_cgroup(graph: Graph, stack: str) -> None:
    gvisor_nodes = [n for n, pool in NODES[stack].items() if pool == "gvisor"]
    assert gvisor_nodes
    for node in gvisor_nodes:
        runsc = tomllib.loads(shipped(graph, f"{node}-containerd-config", "RUNSC_TOML_B64"))
        assert runsc["runsc_config"]["systemd-cgroup"] == "true"


def _enforcer(graph: Graph) -> dict[str, Any]:
    (ds,) = [r for r in graph.of_type(DAEMONSET)
             if r.inputs["metadata"]["name"] == "kube-network-policies"]
    spec: dict[str, Any] = ds.inputs["spec"]["template"]["spec"]
    return spec


def test_policy_enforcer_fails_closed_and_reads_pod_ips_from_the_runtime(
        graph: Graph, stack: str) -> None:
    spec = _enforcer(graph)
    (container,) = spec["containers"]
    assert container["image"] == "registry.k8s.io/networking/kube-network-policies:v1.1.0"
    assert {"--fail-open=false", "--disable-nri=false", "--strict-mode=true"} <= set(
        container["args"])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    assert volumes["nri-plugin"] == mounts["nri-plugin"]["mountPath"] == "/var/run/nri"
    assert mounts["netns"]["mountPropagation"] == "HostToContainer"
    for node in NODES[stack]:
        config = tomllib.loads(shipped(graph, f"{node}-containerd-config",
                                       "CONTAINERD_CONFIG_V3_B64"))
        assert config["plugins"]["io.containerd.nri.v1.nri"]["disable"] is False


def test_kubelet_limits_pids_per_pod(graph: Graph, stack: str) -> None:
    (init,) = [r for r in graph.of_type("command:remote:Command")
               if r.name.endswith("-kubeadm-init")]
    kubelet = next(d for d in shipped_yaml(init, "KUBEADM_CONFIG_B64")
                   if d["kind"] == "KubeletConfiguration")
    assert kubelet["podPidsLimit"] == 1024
