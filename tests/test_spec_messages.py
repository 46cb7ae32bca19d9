"""What a bad stack is told: each root cause once, nothing derived from it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.spec import ConfigError, load
from tests.graph.harness import stack_config
from tests.test_spec import dev_config, with_change


def problems(config: dict[str, Any], stack: str = "dev") -> list[str]:
    with pytest.raises(ConfigError) as error:
        load(config, stack)
    return error.value.problems


def ha_config() -> dict[str, Any]:
    return {k.split(":", 1)[1]: copy.deepcopy(v) for k, v in stack_config("ha").items()}


ROOT_CAUSES = [
    # (change, the one problem expected, as it starts)
    (("network.cidr", "10.17.0.0/33"), "network.cidr: '10.17.0.0/33' is not an IPv4 network"),
    (("network.cidr", "10.17.0.300/24"), "network.cidr: '10.17.0.300/24' is not"),
    (("network.firstNodeHost", "ten"), "network.firstNodeHost: must be an integer"),
    (("pools.0.count", 0), "pools[control-plane].count: 0 is out of range"),
    (("pools.0.count", "three"), "pools[control-plane].count: must be an integer"),
    (("pools.1.count", -1), "pools[gvisor].count: -1 is out of range"),
    (("pools.1.count", "two"), "pools[gvisor].count: must be an integer"),
    (("pools.0.cpu", "two"), "pools[control-plane].cpu: must be an integer"),
    (("pools.1.memoryMiB", "lots"), "pools[gvisor].memoryMiB: must be an integer"),
    (("pools.1.role", "wrker"), "pools[gvisor].role: 'wrker' is not allowed"),
    (("pools.1.runtimes", "gvisor"), "pools[gvisor].runtimes: must be a list"),
    (("pools", "three nodes"), "pools: must be a non-empty list"),
    (("kubernetes.version", "1.35"), "kubernetes.version: '1.35' is malformed"),
    (("containerd.version", "1.5.9"), "containerd.version: 1.5.9 is not supported"),
    (("gvisor.release", "latest"), "gvisor.release: 'latest' is malformed"),
]


@pytest.mark.parametrize(("change", "expected"), ROOT_CAUSES,
                         ids=[f"{c[0]}={c[1]!r}" for c, _ in ROOT_CAUSES])
def test_a_bad_value_is_reported_once_without_what_follows_from_it(
        change: tuple[str, Any], expected: str) -> None:
    config = with_change(*change)
    config["tenants"] = [{"name": "tenant-a"}]  # a rule that reads the pools' runtimes
    [problem] = problems(config)
    assert problem.startswith(expected)


def test_a_bad_node_range_in_ha_says_nothing_of_the_vip() -> None:
    config = ha_config()
    config["network"]["cidr"] = "10.18.0.0/33"
    assert [p.split(":")[0] for p in problems(config, "ha")] == ["network.cidr"]


def test_two_bad_ranges_are_not_said_to_overlap() -> None:
    config = dev_config()
    config["network"]["cidr"] = "x"
    config["kubernetes"]["podCidr"] = "y"
    assert [p.split(":")[0] for p in problems(config)] == ["network.cidr",
                                                           "kubernetes.podCidr"]


def test_a_range_too_small_for_the_nodes_is_one_problem_naming_them() -> None:
    assert problems(with_change("network.cidr", "10.17.0.0/29")) == [
        "network.cidr: 10.17.0.0/29 has no room for 3 of the 3 nodes (master, worker1, "
        "worker2): addresses are assigned from host 10 upward"]


def test_problems_that_do_not_follow_from_each_other_are_all_reported() -> None:
    config = with_change("pools.1.memoryMiB", 512)
    config["pools"][2]["runtimes"] = []
    config["pools"][1]["runtimes"] = []
    config["tenants"] = [{"name": "tenant-a"}]
    config["network"]["cidr"] = "10.244.0.0/24"  # overlaps the pod network
    assert sorted(p.split(":")[0] for p in problems(config)) == [
        "kubernetes.podCidr", "pools[gvisor].memoryMiB", "tenants"]


@pytest.mark.parametrize(("change", "expected"), [
    (("kubernetes.podCIDR", "10.0.0.0/8"), "kubernetes.podCIDR: unknown key; did you mean "
                                           "podCidr? allowed: "),
    (("kubernetes.versoin", "1.34.2"), "kubernetes.versoin: unknown key; did you mean "
                                       "version? allowed: "),
    (("pools.1.cpus", 4), "pools[1].cpus: unknown key; did you mean cpu? allowed: "),
    (("gvisor.runscSha256", "0" * 64), "gvisor.runscSha256: unknown key; did you mean "
                                       "runscSha512? allowed: "),
    (("tenant", [{"name": "a"}]), "tenant: unknown key; did you mean tenants? allowed: "),
    (("gvisor.flags", {"overlay": "none"}), "gvisor.flags.overlay: is not an allowed runsc "
                                            "flag; did you mean overlay2? allowed: "),
])
def test_a_near_miss_key_is_told_the_closest_allowed_one(change: tuple[str, Any],
                                                         expected: str) -> None:
    [problem] = problems(with_change(*change))
    assert problem.startswith(expected)


def test_a_key_like_no_allowed_one_gets_the_list_only() -> None:
    [problem] = problems(with_change("colour", "blue"))
    assert problem.startswith("colour: unknown key; allowed: adminUser, cni, ")
