"""A pool scaled out and in on a running cluster: nodes already there keep their addresses, so
the graph gains (or loses) the node's own resources and its removal step, and nothing else
changes but the table of workers the first control plane's maintenance helper serves."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from components.spec import load
from tests.graph.harness import FakeProviders, Graph, run_program, stack_config
from tests.graph.test_graph import command, script_params

GVISOR_POOL = 1  # dev: control-plane, gvisor (worker1), plain (worker2)
HELPER = "master-maintenance-helper"
# A node's own resources (the components holding its steps included), and its removal step.
NODE_RESOURCES = ("{n}", "{n}-host-key", "{n}-root", "{n}-seed", "{n}-seed-image",
                  "{n}-runtime", "{n}-wait-cloud-init", "{n}-preflight", "{n}-pod-firewall",
                  "{n}-containerd", "{n}-gvisor", "{n}-containerd-config",
                  "{n}-kubernetes-tools", "{n}-join", "{n}-kubeadm-join", "{n}-upgrade",
                  "{n}-removal", "master-remove-{n}")


def with_gvisor_nodes(*names: str) -> dict[str, Any]:
    config = copy.deepcopy(stack_config("dev"))
    config["sandboxed-k8s:pools"][GVISOR_POOL].update(count=len(names), names=list(names))
    return config


def deployed(graph: Graph) -> dict[str, Any]:
    record: dict[str, Any] = graph.stack_outputs["deployed"][0]
    return record


def helper_table(graph: Graph) -> list[str]:
    """The helper's lines "<address> <node>": the workers it drains and uncordons."""
    helper = base64.b64decode(script_params(command(graph, HELPER))["HELPER_B64"]).decode()
    nodes = next(line for line in helper.splitlines() if line.startswith("export NODES_B64="))
    return base64.b64decode(nodes.partition("=")[2]).decode().splitlines()


def changes(before: Graph, after: Graph) -> tuple[set[str], set[str], set[str]]:
    """Names of the resources added, removed, and kept with different inputs."""
    old = {r.urn: r for r in before.resources}
    new = {r.urn: r for r in after.resources}
    return ({new[u].name for u in new.keys() - old.keys()},
            {old[u].name for u in old.keys() - new.keys()},
            {old[u].name for u in old.keys() & new.keys() if old[u].inputs != new[u].inputs})


@pytest.fixture(scope="module")
def one() -> Graph:
    return run_program(stack_config("dev"), "dev")


@pytest.fixture(scope="module")
def two(one: Graph) -> Graph:
    return run_program(with_gvisor_nodes("worker1", "worker3"), "dev",
                       mocks=FakeProviders(deployed(one)))


def test_a_node_added_to_a_pool_moves_no_node_of_a_later_pool(one: Graph, two: Graph) -> None:
    # In pool order worker3 would come before the plain pool's worker2 and take its address.
    assert two.stack_outputs["nodes"][0] == {**one.stack_outputs["nodes"][0],
                                             "worker3": "10.17.0.13"}
    added, removed, changed = changes(one, two)
    assert added == {name.format(n="worker3") for name in NODE_RESOURCES}
    assert not removed
    assert changed == {HELPER}
    assert sorted(helper_table(two)) == sorted([*helper_table(one), "10.17.0.13 worker3"])


def test_the_node_removed_again_leaves_the_graph_as_it_was(one: Graph, two: Graph) -> None:
    back = run_program(stack_config("dev"), "dev", mocks=FakeProviders(deployed(two)))
    added, removed, changed = changes(two, back)
    assert not added and not changed - {HELPER}
    assert removed == {name.format(n="worker3") for name in NODE_RESOURCES}
    assert {r.urn: r.inputs for r in back.resources} == {r.urn: r.inputs for r in one.resources}


def test_a_new_node_never_takes_an_address_the_last_up_used() -> None:
    # worker1 leaves while worker3 joins: its VM still holds .11 until the `up` is done.
    record = deployed(run_program(stack_config("dev"), "dev"))
    spec = load({k.split(":", 1)[1]: v for k, v in with_gvisor_nodes("worker3").items()},
                "dev", record)
    assert {n.name: str(n.ip) for n in spec.nodes} == {
        "master": "10.17.0.10", "worker3": "10.17.0.13", "worker2": "10.17.0.12"}
    # A new stack with the same pools: plain pool order.
    fresh = load({k.split(":", 1)[1]: v for k, v in with_gvisor_nodes("worker3").items()},
                 "dev")
    assert [str(n.ip) for n in fresh.nodes] == ["10.17.0.10", "10.17.0.11", "10.17.0.12"]


def test_a_record_without_addresses_takes_them_from_the_nodes_output(one: Graph) -> None:
    # What the previous version of the program left: the record without addresses, and the
    # output `nodes`.
    outputs = {k: v for k, (v, _) in one.stack_outputs.items()}
    outputs["deployed"] = {k: v for k, v in outputs["deployed"].items() if k != "addresses"}
    graph = run_program(with_gvisor_nodes("worker1", "worker3"), "dev",
                        mocks=FakeProviders(outputs=outputs))
    assert graph.stack_outputs["nodes"][0]["worker2"] == "10.17.0.12"
    assert graph.stack_outputs["nodes"][0]["worker3"] == "10.17.0.13"
