"""Upgrades: one step per node, in one chain in kubeadm's order (the first control plane, the
other control planes, then the workers one at a time), each shipping its node's own install
steps to run again once the node is drained; refused version changes register nothing."""

from __future__ import annotations

import base64
import copy
import itertools
from typing import Any

import pytest

from components.spec import ConfigError
from tests.graph.harness import (
    FakeProviders,
    Graph,
    fake_state,
    is_secret,
    run_program,
    stack_config,
)
from tests.graph.test_graph import COMMAND, NODES, command, script_params, shipped_yaml
from tests.graph.test_removal import HA_DEPLOYED

ORDER = {"dev": ["master", "worker1", "worker2"],
         "ha": ["control-plane-1", "control-plane-2", "control-plane-3", "gvisor-1", "gvisor-2",
                "kata-1"]}
INSTALLS = {"control-plane": ["CONTAINERD", "CONTAINERD_CONFIG", "KUBERNETES"],
            "plain": ["CONTAINERD", "CONTAINERD_CONFIG", "KUBERNETES"],
            "gvisor": ["CONTAINERD", "GVISOR", "CONTAINERD_CONFIG", "KUBERNETES"],
            "kata": ["CONTAINERD", "KATA", "CONTAINERD_CONFIG", "KUBERNETES"]}
STEP_NAMES = {"CONTAINERD": "containerd", "GVISOR": "gvisor", "KATA": "kata",
              "CONTAINERD_CONFIG": "containerd-config", "KUBERNETES": "kubernetes-tools"}


def decoded(params: dict[str, str], name: str) -> str:
    return base64.b64decode(params[name]).decode()


def test_nodes_upgrade_one_at_a_time_in_kubeadms_order(graph: Graph, stack: str) -> None:
    upgrades = [command(graph, f"{n}-upgrade") for n in ORDER[stack]]
    assert len([r for r in graph.of_type(COMMAND) if r.name.endswith("-upgrade")]) == \
        len(upgrades)
    for earlier, later in itertools.pairwise(upgrades):
        assert graph.depends_on(later, earlier), (later.name, earlier.name)
    first, *others = ORDER[stack]
    assert graph.depends_on(upgrades[0], command(graph, f"{first}-kubeadm-init"))
    for node in others:
        assert graph.depends_on(command(graph, f"{node}-upgrade"),
                                command(graph, f"{node}-kubeadm-join"))
    roles = [script_params(u)["ROLE"] for u in upgrades]
    planes = sum(p == "control-plane" for p in NODES[stack].values())
    assert roles == ["first", *["control-plane"] * (planes - 1),
                     *["worker"] * (len(roles) - planes)]


def test_each_upgrade_runs_its_nodes_own_installs_again(graph: Graph, stack: str) -> None:
    for node, pool in NODES[stack].items():
        step = command(graph, f"{node}-upgrade")
        params = script_params(step)
        assert step.inputs["connection"]["host"] == graph.stack_outputs["nodes"][0][node]
        assert params["STEPS"].split() == INSTALLS[pool]
        for name in INSTALLS[pool]:
            install = command(graph, f"{node}-{STEP_NAMES[name]}")
            assert decoded(params, f"STEP_{name}_B64") == install.inputs["stdin"], name
            assert graph.depends_on(step, install)
        tools = script_params(command(graph, f"{node}-kubernetes-tools"))
        assert (params["K8S_VERSION"], params["KUBEADM_SHA256"]) == (
            tools["K8S_VERSION"], tools["KUBEADM_SHA256"])
        assert params["DRAIN_TIMEOUT"] == "10m"


def test_the_first_control_plane_upgrades_to_what_init_read(graph: Graph, stack: str) -> None:
    first = ORDER[stack][0]
    params = script_params(command(graph, f"{first}-upgrade"))
    init = next(d for d in shipped_yaml(command(graph, f"{first}-kubeadm-init"),
                                        "KUBEADM_CONFIG_B64")
                if d["kind"] == "ClusterConfiguration")
    assert shipped_yaml(command(graph, f"{first}-upgrade"), "CLUSTER_CONFIGURATION_B64") == [init]
    # kubeadm's Job health check, run with the stack's wait on the first control plane only.
    (job,) = shipped_yaml(command(graph, f"{first}-upgrade"), "HEALTH_CHECK_JOB_B64")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == \
        f"{init['imageRepository']}/pause:3.10.1"
    assert params["HEALTH_CHECK_TIMEOUT"] == "4m"
    assert "HEALTH_CHECK_JOB_B64" not in script_params(command(graph, f"{ORDER[stack][1]}-upgrade"))
    assert "CLUSTER_CONFIGURATION_B64" not in script_params(
        command(graph, f"{ORDER[stack][1]}-upgrade"))
    assert params["ROLE"] == "first"


def test_every_upgrade_tells_kubeadm_the_version_and_the_stacks_waits(graph: Graph,
                                                                       stack: str) -> None:
    first = ORDER[stack][0]
    init = next(d for d in shipped_yaml(command(graph, f"{first}-kubeadm-init"),
                                        "KUBEADM_CONFIG_B64")
                if d["kind"] == "InitConfiguration")
    wait = init["timeouts"]["controlPlaneComponentHealthCheck"]
    assert wait == "4m"  # kubernetes.controlPlaneTimeout's default: the stacks leave it
    for node in ORDER[stack]:
        (config,) = shipped_yaml(command(graph, f"{node}-upgrade"), "UPGRADE_CONFIGURATION_B64")
        assert config["kind"] == "UpgradeConfiguration"
        assert config["apply"]["kubernetesVersion"] == \
            "v" + script_params(command(graph, f"{node}-upgrade"))["K8S_VERSION"]
        assert config["apply"]["ignorePreflightErrors"] == ["CreateJob"]
        # The stack's 4m: etcd calls (kubeadm's 2m) wait as long; the static pods' restarts
        # keep kubeadm's longer 5m.
        assert config["timeouts"] == {"controlPlaneComponentHealthCheck": wait,
                                      "kubeletHealthCheck": wait, "etcdAPICall": wait}


def test_workers_are_drained_through_the_first_control_planes_helper(graph: Graph,
                                                                     stack: str) -> None:
    first = ORDER[stack][0]
    helper = command(graph, f"{first}-maintenance-helper")
    key = graph.named("maintenance-ssh-key", "tls:index/privateKey:PrivateKey")
    key_state = fake_state(key.type, key.name, key.inputs)
    installed = script_params(helper)
    assert installed["HELPER_PUBLIC_KEY"] == key_state["publicKeyOpenssh"].strip()
    program = decoded(installed, "HELPER_B64")
    addresses = graph.stack_outputs["nodes"][0]
    workers = [n for n, p in NODES[stack].items() if p != "control-plane"]
    listed = "".join(f"{addresses[n]} {n}\n" for n in workers)
    assert f"export NODES_B64={base64.b64encode(listed.encode()).decode()}" in program
    for node, pool in NODES[stack].items():
        step = command(graph, f"{node}-upgrade")
        params = script_params(step)
        if pool == "control-plane":
            assert "MAINTENANCE_KEY_B64" not in params  # they have the admin kubeconfig
            continue
        assert graph.depends_on(step, helper)
        assert params["MAINTENANCE_HOST"] == addresses[first]
        assert decoded(params, "MAINTENANCE_KEY_B64") == key_state["privateKeyOpenssh"]
        assert is_secret(step.raw_inputs["stdin"])


# A version without pins: the stack gives its checksums (what a site's own builds would be).
OWN_BUILD = {"kubeadmSha256": "a" * 64, "kubeletSha256": "b" * 64, "kubectlSha256": "c" * 64}


def ha_with_version(version: str) -> dict[str, Any]:
    config = copy.deepcopy(stack_config("ha"))
    config["sandboxed-k8s:kubernetes"].update(version=version, **OWN_BUILD)
    return config


def test_a_minor_upgrade_reaches_every_node() -> None:
    graph = run_program(ha_with_version("1.35.0"), "ha", mocks=FakeProviders(HA_DEPLOYED))
    for node in ORDER["ha"]:
        params = script_params(command(graph, f"{node}-upgrade"))
        assert params["K8S_VERSION"] == "1.35.0"
        assert params["KUBEADM_SHA256"] == "a" * 64  # the new version's, never 1.34.2's
    assert graph.stack_outputs["deployed"][0]["kubernetesVersion"] == "1.35.0"


@pytest.mark.parametrize("version", ["1.36.0", "1.33.9"])
def test_a_skip_or_a_downgrade_registers_nothing(version: str) -> None:
    graph = Graph()
    with pytest.raises(ConfigError):
        graph = run_program(ha_with_version(version), "ha", mocks=FakeProviders(HA_DEPLOYED))
    assert graph.resources == []
