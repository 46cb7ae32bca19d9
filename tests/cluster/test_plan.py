"""The cluster plan: every remote step of the graph, each after what it waits for."""

from __future__ import annotations

import functools

from tests.cluster.plan import ClusterPlan, cluster_plan
from tests.graph.harness import stack_config


@functools.cache
def dev_plan() -> ClusterPlan:
    return cluster_plan(stack_config("dev"), "dev")


def test_every_step_comes_after_what_it_waits_for() -> None:
    plan = dev_plan()
    position = {s.name: i for i, s in enumerate(plan.steps)}
    assert len(position) == 27  # 7 per node and its upgrade, gVisor on worker1, two helpers
    for step in plan.steps:
        assert all(position[w] < position[step.name] for w in plan.waits[step.name]), step.name
    assert position["master-kubeadm-init"] < position["master-token-issuer"] < \
        position["worker1-kubeadm-join"]
    assert position["worker1-containerd-config"] < position["worker1-kubeadm-join"]


def test_steps_go_to_their_nodes_with_real_credentials() -> None:
    plan = dev_plan()
    hosts = {s.name.split("-", 1)[0]: s.host for s in plan.steps}
    assert hosts == {"master": "10.17.0.10", "worker1": "10.17.0.11", "worker2": "10.17.0.12"}
    assert plan.admin_private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert "certificate-authority-data" in plan.kubeconfig


def test_removal_steps_run_on_the_first_control_plane() -> None:
    plan = dev_plan()
    assert set(plan.removals) == {"master-remove-worker1", "master-remove-worker2"}
    removal = plan.removals["master-remove-worker1"]
    assert removal.host == "10.17.0.10"
    assert "export NODE_NAME=worker1\n" in removal.stdin
    assert "export CONTROL_PLANE=0\n" in removal.stdin
