"""A sandboxed pod is charged its RuntimeClass overhead in the tenant's quota."""

from __future__ import annotations

import json

import pytest

from components.sandbox import overhead
from tests.apiserver.stack import AppliedStack
from verify.checks import compliant_pod

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]


def millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def mebibytes(quantity: str) -> int:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity) // (1024 * 1024)


def used(applied: AppliedStack, namespace: str) -> dict[str, str]:
    quota = applied.kubectl.get("resourcequota", "tenant-quota", "-n", namespace)
    value: dict[str, str] = quota["status"]["used"]
    return value


@pytest.mark.parametrize("runtime", ["gvisor", "kata"])
def test_runtime_class_overhead_counts_against_the_quota(applied: AppliedStack,
                                                         runtime: str) -> None:
    if runtime not in applied.spec.enabled_sandboxes:
        pytest.skip(f"stack {applied.stack} has no {runtime} pool")
    tenant = applied.spec.tenants[-1]  # a namespace the other cases leave alone
    before = used(applied, tenant.name)
    name = f"quota-{runtime}"
    pod = compliant_pod(name, tenant.name, runtime, ["sleep", "3600"])
    applied.kubectl.run("create", "-f", "-", stdin=json.dumps(pod))
    try:
        stored = applied.kubectl.get("pod", name, "-n", tenant.name)
        assert stored["spec"]["overhead"] == overhead(applied.spec, runtime)
        after = used(applied, tenant.name)
        expected_cpu = (millicores(tenant.default_requests["cpu"])
                        + millicores(overhead(applied.spec, runtime)["cpu"]))
        expected_mem = (mebibytes(tenant.default_requests["memory"])
                        + mebibytes(overhead(applied.spec, runtime)["memory"]))
        assert (millicores(after["requests.cpu"]) - millicores(before["requests.cpu"])
                == expected_cpu)
        assert (mebibytes(after["requests.memory"]) - mebibytes(before["requests.memory"])
                == expected_mem)
        assert int(after["pods"]) - int(before["pods"]) == 1
    finally:
        applied.kubectl.run("delete", "pod", name, "-n", tenant.name, "--wait=false")
