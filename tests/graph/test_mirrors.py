"""Mirrors in the graph: every node is pointed at them, and the artifact list names exactly
the images the graph's manifests and kubeadm's configuration use."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import yaml

from components.spec import ClusterSpec, load
from components.spec.artifacts import stack_images
from tests.graph.harness import Graph, run_program, stack_config
from tests.graph.test_graph import command, script_params, shipped_yaml

FILES = "http://10.19.0.1:8080"
REGISTRY = "http://10.19.0.1:5000"
DIGEST = "sha512:" + "ab" * 64


def mirrored_config() -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(stack_config("dev"))
    config["sandboxed-k8s:mirrors"] = {"files": FILES, "registry": REGISTRY,
                                       "apt": f"{FILES}/debian", "offline": False}
    config["sandboxed-k8s:libvirt"]["baseImageChecksum"] = DIGEST
    config["sandboxed-k8s:kubernetes"]["controlPlaneTimeout"] = "20m"
    config["sandboxed-k8s:kubernetes"]["apiClientTimeout"] = "5m"
    config["sandboxed-k8s:kubernetes"]["leaderElection"] = {
        "leaseDuration": "2m", "renewDeadline": "90s", "retryPeriod": "20s"}
    config["sandboxed-k8s:kubernetes"]["etcd"] = {"heartbeatIntervalMs": 500,
                                                  "electionTimeoutMs": 5000}
    return config


def spec_of(config: dict[str, Any], stack: str) -> ClusterSpec:
    return load({k.split(":", 1)[1]: v for k, v in config.items()}, stack)


def images_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "image" and isinstance(inner, str):
                yield inner
            else:
                yield from images_in(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from images_in(inner)


def graph_images(graph: Graph) -> set[str]:
    """Every image a Kubernetes object or a shipped static pod (kube-vip) names."""
    images = {i for r in graph.resources if r.type.startswith("kubernetes:")
              for i in images_in(r.inputs)}
    for r in graph.of_type("command:remote:Command"):
        for name, value in script_params(r).items():
            if name.startswith("KUBE_VIP") and name.endswith("_B64"):
                images.update(images_in(yaml.safe_load(base64.b64decode(value))))
    return images


def test_the_artifact_list_names_every_image_the_graph_uses(graph: Graph, stack: str) -> None:
    listed = set(stack_images(spec_of(stack_config(stack), stack)))
    used = graph_images(graph)
    assert used, "no images found in the graph"
    assert used <= listed, used - listed


def test_every_node_is_pointed_at_the_mirrors() -> None:
    graph = run_program(mirrored_config(), "dev")
    for node in ("master", "worker1", "worker2"):
        step = command(graph, f"{node}-containerd-config")
        hosts = dict(line.split(" ", 1) for line in base64.b64decode(
            script_params(step)["REGISTRY_HOSTS_B64"]).decode().splitlines())
        assert set(hosts) == {"docker.io", "registry.k8s.io"}
        k8s_hosts = base64.b64decode(hosts["registry.k8s.io"]).decode()
        assert f'[host."{REGISTRY}/v2/registry.k8s.io"]' in k8s_hosts
        assert "override_path = true" in k8s_hosts
        install = script_params(command(graph, f"{node}-containerd"))
        assert install["CONTAINERD_BASE_URL"].startswith(f"{FILES}/github.com/")
    for node in graph.seed_images():
        apt = yaml.safe_load(graph.seed_files(node)["user-data"])["apt"]
        assert apt["primary"][0]["uri"] == f"{FILES}/debian"


def test_kubeadm_gets_the_pinned_images_and_the_slow_host_settings() -> None:
    graph = run_program(mirrored_config(), "dev")
    docs = shipped_yaml(command(graph, "master-kubeadm-init"), "KUBEADM_CONFIG_B64")
    init = next(d for d in docs if d["kind"] == "InitConfiguration")
    cluster = next(d for d in docs if d["kind"] == "ClusterConfiguration")
    assert cluster["imageRepository"] == "registry.k8s.io"
    assert cluster["etcd"] == {"local": {"imageTag": "3.6.5-0", "extraArgs": [
        {"name": "heartbeat-interval", "value": "500"},
        {"name": "election-timeout", "value": "5000"}]}}
    assert cluster["dns"] == {"imageTag": "v1.12.1"}
    assert init["timeouts"]["controlPlaneComponentHealthCheck"] == "20m"
    for component in ("controllerManager", "scheduler"):
        assert cluster[component]["extraArgs"] == [
            {"name": "leader-elect-lease-duration", "value": "2m"},
            {"name": "leader-elect-renew-deadline", "value": "90s"},
            {"name": "leader-elect-retry-period", "value": "20s"}]
    join = shipped_yaml(command(graph, "worker1-kubeadm-join"), "KUBEADM_JOIN_CONFIG_B64")[0]
    assert join["timeouts"]["kubeletHealthCheck"] == "20m"
    assert join["timeouts"]["etcdAPICall"] == join["timeouts"]["discovery"] == "20m"


def test_the_kubernetes_provider_waits_longer_on_a_slow_host() -> None:
    provider = run_program(mirrored_config(), "dev").of_type("pulumi:providers:kubernetes")[0]
    assert json.loads(provider.inputs["kubeClientSettings"]) == {"timeout": 300}
    default = run_program(stack_config("dev"), "dev").of_type("pulumi:providers:kubernetes")[0]
    assert "kubeClientSettings" not in default.inputs


def test_a_pinned_base_image_is_verified_before_libvirt_reads_it() -> None:
    graph = run_program(mirrored_config(), "dev")
    fetch = graph.named("base-image-0-verified", "command:local:Command")
    assert fetch.inputs["environment"] == {
        "IMAGE_SOURCE": f"{FILES}/cloud.debian.org/images/cloud/bookworm/latest/"
                        "debian-12-genericcloud-amd64.qcow2",
        "IMAGE_CHECKSUM": DIGEST}
    volume = graph.named("base-image-0", "libvirt:index/volume:Volume")
    assert fetch.urn in volume.property_dependencies["source"]


def test_without_a_checksum_libvirt_reads_the_image_itself() -> None:
    graph = run_program(stack_config("dev"), "dev")
    assert not any(r.name.endswith("-verified") for r in graph.of_type("command:local:Command"))
    volume = graph.named("base-image-0", "libvirt:index/volume:Volume")
    assert volume.inputs["source"].startswith("https://cloud.debian.org/")
