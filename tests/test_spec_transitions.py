"""Changes to a running cluster, checked against what the previous `up` deployed (the stack
output `deployed`): etcd keeps quorum, the first control plane and the endpoint stay."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.spec import ConfigError, load
from components.spec.collector import Collector
from components.spec.transitions import (
    UNRECORDED_NODES,
    Deployed,
    deployed_record,
    read_deployed,
    transition_warnings,
)
from tests.graph.harness import stack_config

CP = ("control-plane-1", "control-plane-2", "control-plane-3")
HA_ENDPOINT = "10.18.0.5:6443"


def ha_config(control_planes: int) -> dict[str, Any]:
    config = {k.split(":", 1)[1]: copy.deepcopy(v) for k, v in stack_config("ha").items()}
    config["pools"][0]["count"] = control_planes
    return config


WORKERS = ("gvisor-1", "gvisor-2", "kata-1")


def deployed(*names: str, endpoint: str = HA_ENDPOINT, version: str = "1.34.2",
             workers: tuple[str, ...] = WORKERS) -> dict[str, Any]:
    return {"controlPlanes": list(names), "controlPlaneEndpoint": endpoint,
            "kubernetesVersion": version, "nodes": [*names, *workers]}


def problems(config: dict[str, Any], record: Any) -> str:
    with pytest.raises(ConfigError) as error:
        load(config, "ha", record)
    return str(error.value)


def test_the_record_is_what_the_next_up_reads_back() -> None:
    spec = load(ha_config(3), "ha")
    record = deployed_record(spec)
    addresses = {n: f"10.18.0.{10 + i}" for i, n in enumerate((*CP, *WORKERS))}
    assert record == {**deployed(*CP), "addresses": addresses}
    previous = read_deployed(Collector(), record)
    assert isinstance(previous, Deployed) and previous.control_planes == CP
    assert previous.addresses == addresses


def test_three_to_two_control_planes_moves_no_worker() -> None:
    """The workers come after the control planes in pool order: they keep their addresses."""
    record = deployed_record(load(ha_config(3), "ha"))
    two = load(ha_config(2), "ha", record)
    assert {n.name: str(n.ip) for n in two.nodes} == {
        n: a for n, a in record["addresses"].items() if n != "control-plane-3"}


@pytest.mark.parametrize("addresses", [["10.18.0.10"], {"control-plane-1": "10.18.0"},
                                       {"control-plane-1": 168951818},
                                       {"Control_Plane": "10.18.0.10"}])
def test_a_record_with_bad_addresses_is_refused(addresses: Any) -> None:
    message = problems(ha_config(3), {**deployed(*CP), "addresses": addresses})
    assert "is not a record this program wrote" in message


def test_three_to_one_in_one_up_is_refused_saying_how() -> None:
    message = problems(ha_config(1), deployed(*CP))
    assert "pools[control-plane].count: 3 -> 1 would remove 2 control planes " \
           "(control-plane-2, control-plane-3)" in message
    assert "remove one per `pulumi up` (3 -> 2, and so on)" in message


def test_down_one_at_a_time_through_an_even_count() -> None:
    two = load(ha_config(2), "ha", deployed(*CP))  # 3 -> 2: on the way down
    assert [n.name for n in two.control_plane_nodes] == list(CP[:2])
    assert transition_warnings(two, read_deployed(Collector(), deployed(*CP)))
    # An interrupted 3 -> 2 is run again as it was.
    load(ha_config(2), "ha", deployed(*CP[:2]))
    one = load(ha_config(1), "ha", deployed(*CP[:2]))  # 2 -> 1
    # The VIP stays the endpoint: every kubelet and kubeconfig holds it.
    assert one.control_plane_endpoint == HA_ENDPOINT and one.uses_vip


@pytest.mark.parametrize(("before", "after"), [(1, 2), (3, 4)])
def test_growing_to_an_even_count_is_refused(before: int, after: int) -> None:
    names = [f"control-plane-{i + 1}" for i in range(before)]
    message = problems(ha_config(after), deployed(*names))
    assert "quorum" in message and "on the way down" in message


def test_a_new_stack_needs_an_odd_count() -> None:
    assert "cannot keep etcd quorum" in problems(ha_config(2), None)


def test_growing_by_two_is_allowed() -> None:
    load(ha_config(3), "ha", deployed(CP[0]))


def test_the_first_control_plane_stays() -> None:
    config = ha_config(3)
    config["pools"][0]["names"] = ["cp-a", *CP[1:]]
    message = problems(config, deployed(*CP))
    assert "the first control plane is control-plane-1" in message


def test_the_endpoint_stays() -> None:
    config = ha_config(3)
    config["network"]["controlPlaneVip"] = "10.18.0.6"
    message = problems(config, deployed(*CP))
    assert "endpoint would change from 10.18.0.5:6443 to 10.18.0.6:6443" in message


def test_an_unreadable_record_is_refused() -> None:
    message = problems(ha_config(3), {"controlPlanes": 3})
    assert "(stack output deployed)" in message and "not a record this program wrote" in message


def with_version(version: str, control_planes: int = 3) -> dict[str, Any]:
    config = ha_config(control_planes)
    # Checksums given: these versions have none pinned (tests/test_spec_pins.py).
    config["kubernetes"].update(version=version, kubeadmSha256="a" * 64,
                                kubeletSha256="b" * 64, kubectlSha256="c" * 64)
    return config


@pytest.mark.parametrize("version", ["1.34.3", "1.35.0"])
def test_kubernetes_goes_up_one_minor_version_at_a_time(version: str) -> None:
    spec = load(with_version(version), "ha", deployed(*CP))
    assert deployed_record(spec)["kubernetesVersion"] == version


@pytest.mark.parametrize(("version", "fragment"), [
    ("1.36.0", "1.34.2 -> 1.36.0 skips a minor version: kubeadm upgrades one at a time; go to "
               "the latest 1.35.x first"),
    ("2.35.0", "skips a minor version"),
    ("1.34.1", "1.34.2 -> 1.34.1 is a downgrade, which kubeadm cannot do"),
    ("1.33.9", "is a downgrade"),
])
def test_a_skip_or_a_downgrade_is_refused(version: str, fragment: str) -> None:
    message = problems(with_version(version), deployed(*CP))
    assert f"kubernetes.version: 1.34.2 -> {version} " in message and fragment in message


def test_nodes_are_not_added_during_an_upgrade() -> None:
    message = problems(with_version("1.35.0"), deployed(*CP, workers=("gvisor-1", "gvisor-2")))
    assert "1.34.2 -> 1.35.0 while adding kata-1: upgrade and add nodes in separate" in message
    # Without a version change, adding is what it always was.
    load(ha_config(3), "ha", deployed(*CP, workers=("gvisor-1", "gvisor-2")))


def test_a_stack_deployed_before_the_record_removes_no_node_until_recorded() -> None:
    earlier = {UNRECORDED_NODES: [*CP, *WORKERS]}
    message = problems(ha_config(1), earlier)
    assert "pools: this stack was deployed by an earlier version of the program" in message
    assert "with control-plane-2, control-plane-3 still in place" in message
    load(ha_config(3), "ha", earlier)  # unchanged: this `up` records it
