"""Admission for real in a tenant namespace: Pod Security `restricted`, the tenant policy, the
RuntimeClass plugin, and what the controllers meet when a template breaks the rules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from components.render.guardrails import POLICY_NAME
from tests.apiserver.stack import AppliedStack
from verify.checks import DENIAL_CASES, DenialCase, compliant_pod
from verify.kube import Obj

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]

SLEEP = ["sleep", "3600"]


def dry_run(applied: AppliedStack, obj: Obj) -> tuple[bool, str]:
    proc = applied.kubectl.run("create", "--dry-run=server", "-f", "-",
                               stdin=json.dumps(obj), check=False)
    return proc.returncode == 0, proc.stderr.strip()


def tenant_pod(applied: AppliedStack, name: str) -> Obj:
    return compliant_pod(name, applied.tenant(), "gvisor", SLEEP)


def test_compliant_pod_is_admitted_and_created(applied: AppliedStack) -> None:
    allowed, message = dry_run(applied, tenant_pod(applied, "compliant-dry"))
    assert allowed, message
    pod = tenant_pod(applied, "compliant")
    applied.kubectl.run("create", "-f", "-", stdin=json.dumps(pod))
    stored = applied.kubectl.get("pod", "compliant", "-n", applied.tenant())
    # the RuntimeClass plugin copied the class's overhead; the LimitRange set requests
    assert stored["spec"]["overhead"], stored["spec"]
    assert stored["spec"]["containers"][0]["resources"]["requests"]
    applied.kubectl.run("delete", "pod", "compliant", "-n", applied.tenant(), "--wait=false")


@pytest.mark.parametrize("case", DENIAL_CASES, ids=[c.slug for c in DENIAL_CASES])
def test_pod_is_denied_by_the_control_meant_to(applied: AppliedStack, case: DenialCase) -> None:
    pod = tenant_pod(applied, f"deny-{case.slug}")
    case.mutate(pod)
    allowed, message = dry_run(applied, pod)
    assert not allowed, f"{case.name}: admitted by a dry run"
    assert any(marker in message for marker in case.markers), message
    created = applied.kubectl.run("create", "-f", "-", stdin=json.dumps(pod), check=False)
    assert created.returncode != 0, f"{case.name}: created"
    assert any(marker in created.stderr for marker in case.markers), created.stderr


@pytest.fixture
def runc_runtime_class(applied: AppliedStack) -> Iterator[None]:
    """A RuntimeClass `runc`, as clusters built by other tools have: the RuntimeClass plugin
    then admits the name, so only the tenant policy stands between a tenant and runc."""
    rc = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
          "metadata": {"name": "runc"}, "handler": "runc"}
    applied.kubectl.run("create", "-f", "-", stdin=json.dumps(rc))
    try:
        yield
    finally:
        applied.kubectl.run("delete", "runtimeclass", "runc")


def test_runc_is_denied_by_the_policy_even_when_a_runc_class_exists(
        applied: AppliedStack, runc_runtime_class: None) -> None:
    pod = tenant_pod(applied, "deny-runc-class")
    pod["spec"]["runtimeClassName"] = "runc"
    allowed, message = dry_run(applied, pod)
    assert not allowed
    assert f"ValidatingAdmissionPolicy '{POLICY_NAME}'" in message, message


def _deployment(applied: AppliedStack, name: str, pod: Obj) -> Obj:
    template = {"metadata": {"labels": {"app": name}},
                "spec": {**pod["spec"], "restartPolicy": "Always"}}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": applied.tenant()},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": template}}


def _replicaset_status(applied: AppliedStack, app: str, timeout: float = 60.0
                       ) -> tuple[list[dict[str, object]], list[str]]:
    """(ReplicaFailure conditions, names of the pods) once the controller has acted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sets = applied.kubectl.get("replicasets", "-n", applied.tenant(), "-l", f"app={app}")
        pods = applied.kubectl.get("pods", "-n", applied.tenant(), "-l", f"app={app}")["items"]
        failures = [c for rs in sets["items"] for c in rs.get("status", {}).get("conditions", [])
                    if c["type"] == "ReplicaFailure"]
        if failures or pods:
            return failures, [p["metadata"]["name"] for p in pods]
        time.sleep(1)
    raise AssertionError(f"the ReplicaSet of {app} neither created a pod nor failed")


def test_a_deployment_breaking_the_policy_is_accepted_but_its_pods_are_denied(
        applied: AppliedStack) -> None:
    pod = tenant_pod(applied, "x")
    pod["spec"].pop("runtimeClassName")
    deployment = _deployment(applied, "unsandboxed", pod)
    applied.kubectl.run("create", "-f", "-", stdin=json.dumps(deployment))
    failures, pods = _replicaset_status(applied, "unsandboxed")
    assert not pods, f"pods were created: {pods}"
    assert any(POLICY_NAME in str(c.get("message")) for c in failures), failures


def test_a_compliant_deployment_gets_its_pod(applied: AppliedStack) -> None:
    deployment = _deployment(applied, "sandboxed", tenant_pod(applied, "x"))
    applied.kubectl.run("create", "-f", "-", stdin=json.dumps(deployment))
    failures, pods = _replicaset_status(applied, "sandboxed")
    assert pods and not failures, failures
