"""The pod network's agents in the graph."""

from __future__ import annotations

from tests.graph.harness import Graph

DAEMONSET = "kubernetes:apps/v1:DaemonSet"
ENDPOINTS = {"dev": "10.17.0.10", "ha": "10.18.0.5"}


def test_network_agents_reach_the_api_server_without_the_service_address(
        graph: Graph, stack: str) -> None:
    """Flannel and the policy enforcer build what Service routing runs on: they go to the
    control plane's endpoint, not to the `kubernetes` Service's address."""
    agents = {r.inputs["metadata"]["name"]: r for r in graph.of_type(DAEMONSET)}
    for name in ("kube-flannel-ds", "kube-network-policies"):
        (container,) = agents[name].inputs["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["KUBERNETES_SERVICE_HOST"] == ENDPOINTS[stack], name
        assert env["KUBERNETES_SERVICE_PORT"] == "6443", name
