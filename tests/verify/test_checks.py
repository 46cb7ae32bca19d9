"""The checks against recorded cluster answers: healthy, and each way a control can break."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.spec import PROOF_IMAGE, SANDBOX_HANDLERS
from tests.verify.fake import (
    FakeCluster,
    node_key,
    probed_url,
    proof_log,
    proof_pod,
    proof_pods_key,
    set_exec,
)
from verify.checks import (
    CONTROL,
    DENIAL_CASES,
    NET_DNS,
    NET_KUBELET,
    NET_METADATA,
    NET_TENANT,
    POD_SPECS,
    RUNTIME_CLASSES,
    TOKEN,
    probe_row,
    proof_specs,
    run_checks,
)
from verify.kube import Unreachable
from verify.report import Row, Status, exit_code, render_table

PROBE, LISTENER = "verify-probe-test", "verify-listener-test"
ADMISSION_NAMES = [CONTROL[0], *(c.spec[0] for c in DENIAL_CASES)]
POD_NAMES = [s[0] for s in POD_SPECS]


def forbidden(message: str) -> dict[str, Any]:
    return {"code": 403, "reason": "Forbidden", "message": message}


def run(scenario: dict[str, Any]) -> tuple[FakeCluster, dict[str, Row], list[Row]]:
    cluster = FakeCluster(scenario)
    rows = run_checks(cluster, timeout=5, run_id="test")
    names = [r.name for r in rows]
    assert len(names) == len(set(names)), "row names must be unique"
    return cluster, {r.name: r for r in rows}, rows


def statuses(by_name: dict[str, Row], names: list[str]) -> set[Status]:
    return {by_name[n].status for n in names}


def test_healthy_cluster_passes_everything(healthy: dict[str, Any]) -> None:
    cluster, by_name, rows = run(healthy)
    assert [r for r in rows if r.status is not Status.PASS] == []
    assert exit_code(rows) == 0
    expected = [s[0] for rt in SANDBOX_HANDLERS for s in proof_specs(rt)]
    assert [r.name for r in rows] == expected + ADMISSION_NAMES + POD_NAMES
    assert "pod 4.4.0, node 6.1.0-41-amd64; dmesg mentions gVisor" in \
        by_name["sandbox proof gvisor: kernel"].observed
    # The probe and the listener were created in two tenants and removed afterwards.
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in cluster.created] == \
        [("tenant-a", PROBE), ("tenant-b", LISTENER)]
    assert sorted(cluster.deleted) == [("pod", LISTENER, "tenant-b"), ("pod", PROBE, "tenant-a")]


def test_control_and_probe_pods_are_compliant(healthy: dict[str, Any]) -> None:
    cluster, _, _ = run(healthy)
    control = cluster.dry_runs[0]
    assert control["metadata"]["name"] == "verify-control-test"
    for pod in (control, *cluster.created):
        spec = pod["spec"]
        assert spec["runtimeClassName"] == "gvisor"
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65534,
                                           "seccompProfile": {"type": "RuntimeDefault"}}
        (container,) = spec["containers"]
        assert container["image"] == PROOF_IMAGE
        assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]}}


def test_each_denial_case_changes_one_thing(healthy: dict[str, Any]) -> None:
    cluster, _, _ = run(healthy)
    pods = {p["metadata"]["name"].removeprefix("verify-deny-").removesuffix("-test"): p
            for p in cluster.dry_runs[1:]}
    assert "runtimeClassName" not in pods["no-class"]["spec"]
    assert pods["runc"]["spec"]["runtimeClassName"] == "runc"
    assert pods["privileged"]["spec"]["containers"][0]["securityContext"] == {"privileged": True}
    assert pods["host-path"]["spec"]["volumes"][0]["hostPath"] == {"path": "/"}
    assert pods["host-network"]["spec"]["hostNetwork"] is True
    assert pods["host-pid"]["spec"]["hostPID"] is True
    assert pods["empty-class"]["spec"]["runtimeClassName"] == ""
    assert pods["host-port"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 8080, "hostPort": 8080}]
    (volume,) = pods["projected-token"]["spec"]["volumes"]
    assert volume["projected"]["sources"] == [{"serviceAccountToken": {"path": "token"}}]
    assert pods["system-priority"]["spec"]["priorityClassName"] == "system-node-critical"
    assert pods["gvisor-flag"]["metadata"]["annotations"] == {"dev.gvisor.flag.debug": "true"}
    assert pods["automount"]["spec"]["automountServiceAccountToken"] is True


def test_gvisor_pod_that_saw_the_node_kernel_fails(healthy: dict[str, Any]) -> None:
    healthy["logs"][proof_log(healthy, "gvisor")] = ("kernel-release: 6.1.0-41-amd64\n"
                                   "dmesg: klogctl: Operation not permitted\n")
    _, by_name, rows = run(healthy)
    row = by_name["sandbox proof gvisor: kernel"]
    assert row.status is Status.FAIL
    assert "pod 6.1.0-41-amd64, node 6.1.0-41-amd64; no gVisor in dmesg" in row.observed
    assert exit_code(rows) == 1


def test_gvisor_needs_its_dmesg_too(healthy: dict[str, Any]) -> None:
    healthy["logs"][proof_log(healthy, "gvisor")] = "kernel-release: 4.4.0\n"
    _, by_name, _ = run(healthy)
    assert by_name["sandbox proof gvisor: kernel"].status is Status.FAIL


def test_kata_with_the_node_kernel_fails(healthy: dict[str, Any]) -> None:
    healthy["logs"][proof_log(healthy, "kata")] = "kernel-release: 6.1.0-41-amd64\n"
    _, by_name, _ = run(healthy)
    assert by_name["sandbox proof kata: kernel"].status is Status.FAIL


def test_proof_node_without_the_sandbox_label_fails(healthy: dict[str, Any]) -> None:
    labels = healthy["get"][node_key(healthy, "gvisor")]["metadata"]["labels"]
    del labels["runtime.sandboxed-k8s.io/gvisor"]
    _, by_name, _ = run(healthy)
    row = by_name["sandbox proof gvisor: node"]
    assert row.status is Status.FAIL
    assert "no runtime.sandboxed-k8s.io/gvisor label" in row.observed


def test_wrong_handler_fails(healthy: dict[str, Any]) -> None:
    healthy["get"]["runtimeclasses"]["items"][0]["handler"] = "runc"
    _, by_name, _ = run(healthy)
    assert by_name["runtimeclass gvisor: handler"].status is Status.FAIL


def test_log_read_failure_is_error(healthy: dict[str, Any]) -> None:
    name = proof_pod(healthy, "gvisor")["metadata"]["name"]
    healthy["logs"][proof_log(healthy, "gvisor")] = {
        "error": f'logs {name}: 404 NotFound: pods "{name}" not found'}
    _, by_name, rows = run(healthy)
    row = by_name["sandbox proof gvisor: kernel"]
    assert row.status is Status.ERROR
    assert "NotFound" in row.observed
    assert by_name["sandbox proof gvisor: node"].status is Status.PASS
    assert exit_code(rows) == 1


def test_missing_proof_pod_is_error(healthy: dict[str, Any]) -> None:
    healthy["get"][proof_pods_key("kata")]["items"] = []
    _, by_name, _ = run(healthy)
    for name in ("sandbox proof kata: node", "sandbox proof kata: kernel"):
        assert by_name[name].status is Status.ERROR
        assert "no pod of Job sandbox-proof/sandbox-proof-kata" in by_name[name].observed


def test_failed_proof_pod_is_error(healthy: dict[str, Any]) -> None:
    proof_pod(healthy, "gvisor")["status"]["phase"] = "Failed"
    _, by_name, _ = run(healthy)
    assert by_name["sandbox proof gvisor: kernel"].status is Status.ERROR


def test_running_proof_pod_is_waited_for(healthy: dict[str, Any]) -> None:
    pod = proof_pod(healthy, "gvisor")
    name = pod["metadata"]["name"]
    healthy["get"][f"pods -n sandbox-proof {name}"] = copy.deepcopy(pod)
    pod["status"]["phase"] = "Running"
    _, by_name, _ = run(healthy)
    assert by_name["sandbox proof gvisor: kernel"].status is Status.PASS
    healthy["wait_errors"] = {name: "timed out waiting for the condition"}
    _, by_name, _ = run(healthy)
    assert by_name["sandbox proof gvisor: kernel"].status is Status.ERROR


def test_no_sandbox_runtimeclass_is_error(healthy: dict[str, Any]) -> None:
    healthy["get"]["runtimeclasses"]["items"] = []
    _, by_name, rows = run(healthy)
    assert by_name[RUNTIME_CLASSES[0]].status is Status.ERROR
    assert statuses(by_name, ADMISSION_NAMES + POD_NAMES) == {Status.ERROR}
    assert exit_code(rows) == 1


def test_only_kata_uses_kata_for_the_tenant_pods(healthy: dict[str, Any]) -> None:
    del healthy["get"]["runtimeclasses"]["items"][0]
    cluster, _, _ = run(healthy)
    assert {p["spec"]["runtimeClassName"] for p in cluster.created} == {"kata"}


def test_denial_case_the_cluster_allowed_fails(healthy: dict[str, Any]) -> None:
    healthy["dry_run"]["verify-deny-privileged-test"] = None
    _, by_name, rows = run(healthy)
    row = by_name["admission: deny privileged"]
    assert (row.status, row.observed) == (Status.FAIL, "allowed")
    assert exit_code(rows) == 1


def test_denial_by_an_unrelated_control_is_error(healthy: dict[str, Any]) -> None:
    healthy["dry_run"]["verify-deny-automount-test"] = forbidden(
        'pods "verify-deny-automount-test" is forbidden: exceeded quota: tenant-quota, '
        "requested: pods=1, used: pods=20, limited: pods=20")
    _, by_name, _ = run(healthy)
    row = by_name["admission: deny automountServiceAccountToken true"]
    assert row.status is Status.ERROR
    assert "exceeded quota" in row.observed


def test_denied_control_pod_voids_the_denials(healthy: dict[str, Any]) -> None:
    healthy["dry_run"]["verify-control-test"] = forbidden(
        'pods "verify-control-test" is forbidden: pod rejected: RuntimeClass "gvisor" not found')
    _, by_name, rows = run(healthy)
    assert by_name[CONTROL[0]].status is Status.FAIL
    for case in DENIAL_CASES:
        row = by_name[case.spec[0]]
        assert row.status is Status.ERROR, case.name
        assert "control pod was denied" in row.observed
    assert exit_code(rows) == 1


def test_dry_run_api_error_is_error(healthy: dict[str, Any]) -> None:
    del healthy["dry_run"]["verify-deny-host-pid-test"]
    _, by_name, _ = run(healthy)
    assert by_name["admission: deny hostPID"].status is Status.ERROR


def test_denial_rows_carry_the_servers_status(healthy: dict[str, Any]) -> None:
    _, by_name, _ = run(healthy)
    row = by_name["admission: deny hostPID"]
    assert row.api_status is not None
    assert (row.api_status.code, row.api_status.reason) == (403, "Forbidden")
    assert row.observed == ('denied (403 Forbidden): violates PodSecurity "restricted:v1.34": '
                            "host namespaces (hostPID=true)")
    policy = by_name["admission: deny automountServiceAccountToken true"].observed
    assert policy.startswith("denied (403 Forbidden): policy sandboxed-k8s-tenant-pods: ")
    assert by_name[CONTROL[0]].api_status is None


def test_unreachable_api_server_stops_the_run_after_cleaning_up(
        healthy: dict[str, Any]) -> None:
    healthy["unreachable"] = ["exec"]
    cluster = FakeCluster(healthy)
    with pytest.raises(Unreachable, match="cannot reach the API server"):
        run_checks(cluster, timeout=5, run_id="test")
    assert sorted(cluster.deleted) == [("pod", LISTENER, "tenant-b"), ("pod", PROBE, "tenant-a")]
    healthy["unreachable"] = ["get_json"]
    with pytest.raises(Unreachable):
        run_checks(FakeCluster(healthy), timeout=5, run_id="test")


def test_tenant_reaching_another_tenant_fails(healthy: dict[str, Any]) -> None:
    url = probed_url(healthy, ":8080/")
    set_exec(healthy, PROBE, url, 0, "sandboxed-k8s-verify-listener\n")
    _, by_name, rows = run(healthy)
    row = by_name[NET_TENANT[0]]
    assert row.status is Status.FAIL
    assert f"{url} answered" in row.observed
    assert exit_code(rows) == 1


def test_listener_that_does_not_serve_is_error(healthy: dict[str, Any]) -> None:
    set_exec(healthy, LISTENER, "http://127.0.0.1:8080/", 1, "",
             "wget: can't connect to remote host (127.0.0.1): Connection refused")
    _, by_name, _ = run(healthy)
    row = by_name[NET_TENANT[0]]
    assert row.status is Status.ERROR
    assert "does not serve" in row.observed


def test_single_tenant_namespace_makes_tenant_row_error(healthy: dict[str, Any]) -> None:
    items = healthy["get"]["namespaces -l sandboxed-k8s.io/tenant=true"]["items"]
    items[:] = [ns for ns in items if ns["metadata"]["name"] == "tenant-a"]
    cluster, by_name, _ = run(healthy)
    row = by_name[NET_TENANT[0]]
    assert row.status is Status.ERROR
    assert "only one tenant namespace (tenant-a)" in row.observed
    others = [s[0] for s in POD_SPECS if s != NET_TENANT]
    assert statuses(by_name, others) == {Status.PASS}
    assert [p["metadata"]["name"] for p in cluster.created] == [PROBE]


def test_no_tenant_namespace_is_error(healthy: dict[str, Any]) -> None:
    healthy["get"]["namespaces -l sandboxed-k8s.io/tenant=true"]["items"] = []
    cluster, by_name, rows = run(healthy)
    assert statuses(by_name, ADMISSION_NAMES + POD_NAMES) == {Status.ERROR}
    assert "no namespace labelled sandboxed-k8s.io/tenant=true" in by_name[TOKEN[0]].observed
    assert cluster.created == []
    assert exit_code(rows) == 1


def test_kubelet_answering_200_fails(healthy: dict[str, Any]) -> None:
    set_exec(healthy, PROBE, probed_url(healthy, ":10250/"), 0, '{"kind":"PodList"}')
    _, by_name, _ = run(healthy)
    assert by_name[NET_KUBELET[0]].status is Status.FAIL


def test_kubelet_answering_401_passes(healthy: dict[str, Any]) -> None:
    url = probed_url(healthy, ":10250/")
    set_exec(healthy, PROBE, url, 1, "",
             "wget: server returned error: HTTP/1.1 401 Unauthorized")
    _, by_name, _ = run(healthy)
    row = by_name[NET_KUBELET[0]]
    assert (row.status, row.observed) == (Status.PASS, f"{url} answered HTTP 401")


def test_metadata_answering_fails(healthy: dict[str, Any]) -> None:
    set_exec(healthy, PROBE, "http://169.254.169.254:80/", 1, "",
             "wget: server returned error: HTTP/1.1 404 Not Found")
    _, by_name, _ = run(healthy)
    assert by_name[NET_METADATA[0]].status is Status.FAIL


def test_dns_failure_fails(healthy: dict[str, Any]) -> None:
    set_exec(healthy, PROBE, "nslookup", 1, "Server:\t\t10.96.0.10\n",
             ";; connection timed out; no servers could be reached")
    _, by_name, _ = run(healthy)
    assert by_name[NET_DNS[0]].status is Status.FAIL


def test_mounted_token_fails(healthy: dict[str, Any]) -> None:
    set_exec(healthy, PROBE, "/var/run/secrets/kubernetes.io/serviceaccount", 0,
             "ca.crt\nnamespace\ntoken\n")
    _, by_name, _ = run(healthy)
    assert by_name[TOKEN[0]].status is Status.FAIL


def test_probe_that_never_gets_ready_is_error_and_cleaned_up(healthy: dict[str, Any]) -> None:
    healthy["wait_errors"] = {PROBE: "pod tenant-a/verify-probe-test not Ready after 5s: "
                                     "Pending; main: ImagePullBackOff"}
    cluster, by_name, rows = run(healthy)
    assert statuses(by_name, POD_NAMES) == {Status.ERROR}
    assert "not Ready after 5s" in by_name[TOKEN[0]].observed
    assert {name for _, name, _ in cluster.deleted} == {PROBE, LISTENER}
    assert exit_code(rows) == 1


def test_probe_row_outcomes() -> None:
    spec = ("x", "y")
    url = "http://10.0.0.1/"
    assert probe_row(spec, url, (143, "", "")).status is Status.PASS
    assert probe_row(spec, url, (1, "", "wget: can't connect to remote host (10.0.0.1): "
                                        "No route to host")).status is Status.PASS
    assert probe_row(spec, url, (1, "", "wget: server returned error: HTTP/1.1 403 "
                                        "Forbidden"), ("403",)).status is Status.PASS
    assert probe_row(spec, url, (127, "", "sh: wget: not found")).status is Status.ERROR


def test_table_names_every_check(healthy: dict[str, Any]) -> None:
    _, _, rows = run(healthy)
    table = render_table(rows)
    header, rule, *body = table.splitlines()
    assert header.split(" | ")[0].strip() == "CHECK" and header.endswith("RESULT")
    assert set(rule) <= {"-", "+"}
    names = [s[0] for rt in SANDBOX_HANDLERS for s in proof_specs(rt)] + ADMISSION_NAMES + \
        POD_NAMES
    for name in names:
        assert any(line.startswith(name + " ") for line in body), name
    assert table.endswith(f"{len(rows)} checks: {len(rows)} PASS, 0 FAIL, 0 ERROR")
    assert len(rows) == 25
