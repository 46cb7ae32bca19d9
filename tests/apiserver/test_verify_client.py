"""verify's Kubernetes client against the real API server: admission answers as the server's
Status (code, reason, message), refusals that are not admission, exec through the stream API,
and the command itself finding the kubeconfig through $KUBECONFIG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.render.guardrails import POLICY_NAME
from tests.apiserver.stack import AppliedStack
from tests.build_tools import REPO_ROOT
from verify.checks import CONTROL, DENIAL_CASES, check_admission, compliant_pod, proof_specs
from verify.client import KubeClient, Target, api_client, connect
from verify.kube import ApiStatus, KubeError
from verify.report import Status

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]

# The RuntimeClass plugin cannot look an empty name up; the server answers without a reason.
EMPTY_NAME = ApiStatus(500, "", "resource name may not be empty")


def kube(applied: AppliedStack) -> KubeClient:
    cluster = connect(Target(str(applied.plane.kubeconfig)), 60).cluster
    assert isinstance(cluster, KubeClient)
    return cluster


def test_verify_admission_rows_pass_with_the_servers_status(applied: AppliedStack) -> None:
    rows = check_admission(kube(applied), applied.tenant(), "gvisor", "real")
    assert [r.name for r in rows] == [CONTROL[0], *(c.spec[0] for c in DENIAL_CASES)]
    failing = [(r.name, r.observed) for r in rows if r.status is not Status.PASS]
    assert not failing, failing
    assert rows[0].api_status is None
    for case, row in zip(DENIAL_CASES, rows[1:], strict=True):
        status = row.api_status
        assert status is not None, case.slug
        if case.slug == "empty-class":
            assert status == EMPTY_NAME
            continue
        assert (status.code, status.reason) == (403, "Forbidden"), (case.slug, status)
        name = f"verify-deny-{case.slug}-real"
        assert status.message.startswith(f'pods "{name}" is forbidden: '), status.message
        if case.markers == ("PodSecurity",):
            assert 'violates PodSecurity "restricted:v1.34"' in status.message
        elif case.slug != "runc":  # refused first by the RuntimeClass plugin: no class runc
            assert f"ValidatingAdmissionPolicy '{POLICY_NAME}'" in status.message


def test_refusals_that_are_not_admission_raise_with_their_status(
        applied: AppliedStack) -> None:
    tenant = applied.tenant()
    pod = compliant_pod("verify-invalid", tenant, "gvisor", ["true"])
    pod["spec"]["containers"] = []
    with pytest.raises(KubeError) as raised:
        kube(applied).dry_run_create(pod)
    assert raised.value.status is not None
    assert (raised.value.status.code, raised.value.status.reason) == (422, "Invalid")
    # A service account may not create pods: RBAC's Forbidden, which is no admission answer.
    api = api_client(Target(str(applied.plane.kubeconfig)), 60)
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{tenant}:default")
    as_sa = KubeClient(api, 60)
    with pytest.raises(KubeError) as raised:
        as_sa.dry_run_create(compliant_pod("verify-rbac", tenant, "gvisor", ["true"]))
    status = raised.value.status
    assert status is not None
    assert (status.code, status.reason) == (403, "Forbidden")
    assert 'cannot create resource "pods"' in status.message


def test_exec_goes_through_the_stream_api_to_the_server(applied: AppliedStack) -> None:
    """No kubelet here: the server itself refuses to exec into a pod without a node, and says
    so in a Status over the websocket handshake."""
    cluster, tenant = kube(applied), applied.tenant()
    cluster.create(compliant_pod("verify-exec", tenant, "gvisor", ["sleep", "3600"]))
    try:
        with pytest.raises(KubeError) as raised:
            cluster.exec("verify-exec", tenant, ["true"])
        assert raised.value.status is not None, str(raised.value)
        assert raised.value.status.code == 400, raised.value.status
        assert "does not have a host assigned" in raised.value.status.message
    finally:
        cluster.delete("pod", "verify-exec", tenant)
    with pytest.raises(KubeError) as raised:
        cluster.get_json("pods", "verify-exec", tenant)
    assert raised.value.status is not None and raised.value.status.code == 404


@pytest.mark.parametrize("applied", ["ha"], indirect=True)
def test_verify_command_with_kubeconfig_from_the_environment(applied: AppliedStack,
                                                             tmp_path: Path) -> None:
    """The command end to end, kubeconfig from $KUBECONFIG, JSON out. Nothing runs pods here,
    so the proof and probe rows are ERROR; the rest must pass."""
    def live_labelled_pods() -> set[str]:  # other tests' pods on this server carry it too
        pods = applied.kubectl.get("pods", "-A", "-l",
                                   "app.kubernetes.io/managed-by=sandboxed-k8s-verify")["items"]
        return {f'{p["metadata"]["namespace"]}/{p["metadata"]["name"]}' for p in pods
                if not p["metadata"].get("deletionTimestamp")}

    before = live_labelled_pods()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "KUBECONFIG": f"{tmp_path / 'missing'}:{applied.plane.kubeconfig}"}
    done = subprocess.run([sys.executable, "-m", "verify", "-o", "json", "--timeout", "2"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["cluster"] == {"server": applied.plane.url, "version": "v1.34.2"}
    results = {c["name"]: c["result"] for c in doc["checks"]}
    handlers = [proof_specs(rt)[0][0] for rt in applied.spec.enabled_sandboxes]
    admission = [CONTROL[0], *(c.spec[0] for c in DENIAL_CASES)]
    assert {results[n] for n in handlers + admission} == {"PASS"}, results
    assert doc["summary"]["ERROR"] == len(results) - len(handlers) - len(admission)
    assert doc["summary"]["FAIL"] == 0
    assert live_labelled_pods() - before == set()  # verify's own probe pods are gone
