"""A node leaving the cluster: every node but the first control plane has a removal step on the
first control plane that runs only when deleted, and the engine deletes it before anything of
the node it depends on (its join, its VM). Unsafe control-plane changes are refused before
anything is declared, from what the previous `up` recorded."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from components.render.scripts import REMOTE_RUNNER, render_invocation
from components.spec import ConfigError
from tests.graph.harness import FakeProviders, Graph, run_program, stack_config
from tests.graph.test_graph import COMMAND, DOMAIN, NODES, command

FIRST = {"dev": "master", "ha": "control-plane-1"}


def removal(graph: Graph, stack: str, node: str) -> Any:
    return command(graph, f"{FIRST[stack]}-remove-{node}")


def test_every_other_node_has_a_removal_run_on_the_first_control_plane(graph: Graph,
                                                                      stack: str) -> None:
    first = FIRST[stack]
    addresses = graph.stack_outputs["nodes"][0]
    removals = [r for r in graph.of_type(COMMAND) if "-remove-" in r.name]
    assert sorted(r.name for r in removals) == sorted(
        f"{first}-remove-{n}" for n in NODES[stack] if n != first)
    for node, pool in NODES[stack].items():
        if node == first:
            continue
        step = removal(graph, stack, node)
        assert step.inputs["connection"]["host"] == addresses[first]
        assert "create" not in step.inputs and "update" not in step.inputs
        assert step.inputs["delete"] == REMOTE_RUNNER
        assert step.inputs["stdin"] == render_invocation("remove-node.sh", {
            "NODE_NAME": node, "NODE_IP": addresses[node],
            "CONTROL_PLANE": "1" if pool == "control-plane" else "0",
            "ETCD_POD": f"etcd-{first}", "DRAIN_TIMEOUT": "10m"})


def test_a_removal_is_deleted_before_the_node_it_takes_out(graph: Graph, stack: str) -> None:
    # The engine deletes a resource only after everything that depends on it: depending on the
    # node's join (and so on its VM), the removal runs while the node and its VM still exist.
    domains = {d.name: d for d in graph.of_type(DOMAIN)}
    for node in NODES[stack]:
        if node == FIRST[stack]:
            continue
        step = removal(graph, stack, node)
        assert graph.depends_on(step, command(graph, f"{node}-kubeadm-join"))
        assert graph.depends_on(step, domains[node])
        # A replaced VM takes the removal down first (its id is an input), so the old machine
        # leaves the cluster, and etcd, before the new one joins under the same name.
        assert step.property_dependencies["triggers"] == [domains[node].urn]


def test_control_planes_leave_one_at_a_time_last_joined_first(graph: Graph, stack: str) -> None:
    planes = [n for n, p in NODES[stack].items() if p == "control-plane"][1:]
    for earlier, later in itertools.pairwise(planes):
        assert graph.depends_on(removal(graph, stack, later), removal(graph, stack, earlier))
    workers = [n for n, p in NODES[stack].items() if p != "control-plane"]
    for a, b in itertools.permutations(workers, 2):
        assert not graph.depends_on(removal(graph, stack, a), removal(graph, stack, b))


def test_the_program_reads_its_own_last_outputs_and_records_what_it_deployed() -> None:
    mocks = FakeProviders()
    graph = run_program(stack_config("ha"), "ha", mocks=mocks)
    assert mocks.stack_reads == ["organization/sandboxed-k8s/ha"]
    assert graph.stack_outputs["deployed"] == (HA_DEPLOYED, False)


def ha_with_control_planes(count: int) -> dict[str, Any]:
    config = copy.deepcopy(stack_config("ha"))
    config["sandboxed-k8s:pools"][0]["count"] = count
    return config


HA_DEPLOYED = {"controlPlanes": ["control-plane-1", "control-plane-2", "control-plane-3"],
               "controlPlaneEndpoint": "10.18.0.5:6443", "kubernetesVersion": "1.34.2",
               "nodes": [*NODES["ha"]],
               "addresses": {n: f"10.18.0.{10 + i}" for i, n in enumerate(NODES["ha"])}}


def test_three_control_planes_to_one_is_refused_before_any_resource() -> None:
    graph = Graph()
    with pytest.raises(ConfigError) as error:
        graph = run_program(ha_with_control_planes(1), "ha", mocks=FakeProviders(HA_DEPLOYED))
    assert "remove one per `pulumi up`" in str(error.value)
    assert graph.resources == []


def test_three_control_planes_to_two_leaves_the_third_out() -> None:
    graph = run_program(ha_with_control_planes(2), "ha", mocks=FakeProviders(HA_DEPLOYED))
    names = {r.name for r in graph.of_type(COMMAND)}
    assert "control-plane-1-remove-control-plane-2" in names
    assert not any("control-plane-3" in n for n in names)
    assert graph.stack_outputs["deployed"][0]["controlPlaneEndpoint"] == "10.18.0.5:6443"


class OldFileBackend(FakeProviders):
    """A file backend from before project-scoped stacks: bare stack names only."""

    def __init__(self, deployed: dict[str, Any] | None, knows_bare_names: bool = True) -> None:
        super().__init__(deployed)
        self.knows_bare_names = knows_bare_names

    def call(self, args: Any) -> Any:
        if args.token == "pulumi:pulumi:readStackOutputs" and (
                "/" in args.args["name"] or not self.knows_bare_names):
            return {}, [("name", f"unknown stack {args.args['name']}")]  # the engine's refusal
        return super().call(args)


def test_a_backend_without_qualified_names_is_read_by_the_bare_stack_name() -> None:
    with pytest.raises(ConfigError) as error:
        run_program(ha_with_control_planes(1), "ha", mocks=OldFileBackend(HA_DEPLOYED))
    assert "remove one per `pulumi up`" in str(error.value)


def test_no_record_to_check_against_fails_closed() -> None:
    graph = Graph()
    with pytest.raises(ConfigError) as error:
        graph = run_program(stack_config("ha"), "ha",
                            mocks=OldFileBackend(HA_DEPLOYED, knows_bare_names=False))
    assert "cannot read what the last `pulumi up` of this stack deployed" in str(error.value)
    assert graph.resources == []


def test_a_stack_deployed_before_the_record_is_read_from_its_nodes_output() -> None:
    # What an earlier version of the program left: its outputs, no `deployed` record.
    earlier = run_program(stack_config("ha"), "ha").stack_outputs
    outputs = {k: v for k, (v, _) in earlier.items() if k != "deployed"}
    graph = Graph()
    with pytest.raises(ConfigError) as error:
        graph = run_program(ha_with_control_planes(1), "ha", mocks=FakeProviders(outputs=outputs))
    assert "deployed by an earlier version of the program" in str(error.value)
    assert graph.resources == []
    recorded = run_program(stack_config("ha"), "ha", mocks=FakeProviders(outputs=outputs))
    assert recorded.stack_outputs["deployed"][0] == HA_DEPLOYED
