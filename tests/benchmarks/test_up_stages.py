"""benchmarks/up_stages.py on small synthetic event logs (the format of `pulumi up
--event-log`): spans, stages, the critical path from timing alone and from the state's
dependencies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import up_stages
from benchmarks.events import Span, critical_path, dependencies_from_state, spans, stage

STACK = "urn:pulumi:lab::sandboxed-k8s::"
REMOTE, DOMAIN = "command:remote:Command", "libvirt:index/domain:Domain"
POD, DAEMONSET, NAMESPACE = ("kubernetes:core/v1:Pod", "kubernetes:apps/v1:DaemonSet",
                             "kubernetes:core/v1:Namespace")
COMPONENT = "sandboxed-k8s:node:NodeRuntime"


def urn(name: str, typ: str = REMOTE) -> str:
    return f"{STACK}{typ}::{name}"


def write_log(path: Path, events: list[tuple[int, str, str, str]]) -> Path:
    """events: (timestamp, pre|out|fail, name, type); sequence numbers in list order."""
    kinds = {"pre": "resourcePreEvent", "out": "resOutputsEvent", "fail": "resOpFailedEvent"}
    lines = [json.dumps({"sequence": 0, "timestamp": events[0][0], "preludeEvent": {}})]
    for seq, (ts, kind, name, typ) in enumerate(events, start=1):
        # As the engine writes it: `custom` only when true.
        meta = {"op": "create", "urn": urn(name, typ), "type": typ,
                "new": {"type": typ} if typ == COMPONENT else {"type": typ, "custom": True}}
        lines.append(json.dumps({"sequence": seq, "timestamp": ts,
                                 kinds[kind]: {"metadata": meta}}))
    path.write_text("\n".join(lines) + "\n")
    return path


# A small cluster: two VMs, cloud-init, node steps, init, token, join, Kubernetes objects.
CLUSTER = [
    (100, "pre", "master-runtime", COMPONENT), (100, "pre", "master", DOMAIN),
    (100, "pre", "worker1", DOMAIN), (101, "out", "master-runtime", COMPONENT),
    (125, "out", "worker1", DOMAIN), (125, "pre", "worker1-wait-cloud-init", REMOTE),
    (130, "out", "master", DOMAIN), (130, "pre", "master-wait-cloud-init", REMOTE),
    (280, "out", "worker1-wait-cloud-init", REMOTE), (280, "pre", "worker1-containerd", REMOTE),
    (300, "out", "master-wait-cloud-init", REMOTE), (300, "pre", "master-preflight", REMOTE),
    (305, "out", "worker1-containerd", REMOTE),
    (310, "out", "master-preflight", REMOTE), (310, "pre", "master-kubeadm-init", REMOTE),
    (600, "out", "master-kubeadm-init", REMOTE), (600, "pre", "master-bootstrap-token", REMOTE),
    (600, "pre", "kube-flannel-ds", DAEMONSET), (600, "pre", "tenant-b", NAMESPACE),
    (610, "out", "master-bootstrap-token", REMOTE), (610, "pre", "worker1-kubeadm-join", REMOTE),
    (650, "out", "worker1-kubeadm-join", REMOTE),
    # nginx-gvisor waits for the join and Flannel; tenant-b finished last, but is unrelated.
    (660, "out", "kube-flannel-ds", DAEMONSET), (660, "out", "tenant-b", NAMESPACE),
    (660, "pre", "nginx-gvisor", POD), (700, "out", "nginx-gvisor", POD),
]
STATE_DEPS = {
    "worker1-wait-cloud-init": ["worker1"], "master-wait-cloud-init": ["master"],
    "worker1-containerd": ["worker1-wait-cloud-init"],
    "master-preflight": ["master-wait-cloud-init"], "master-kubeadm-init": ["master-preflight"],
    "master-bootstrap-token": ["master-kubeadm-init"], "kube-flannel-ds": ["master-kubeadm-init"],
    "tenant-b": ["master-kubeadm-init"],
    "worker1-kubeadm-join": ["master-bootstrap-token", "worker1-containerd"],
    "nginx-gvisor": ["worker1-kubeadm-join", "kube-flannel-ds"],
}


def state() -> dict[str, object]:
    types = {name: typ for _, _, name, typ in CLUSTER}
    return {"deployment": {"resources": [
        {"urn": urn(name, typ), "type": typ,
         "dependencies": [urn(d, types[d]) for d in STATE_DEPS.get(name, [])]}
        for name, typ in types.items()]}}


def test_each_step_spans_its_pre_event_to_its_outputs_or_failure(tmp_path: Path) -> None:
    log = write_log(tmp_path / "events.jsonl", [
        (100, "pre", "master-preflight", REMOTE), (130, "pre", "master-kubeadm-init", REMOTE),
        (140, "out", "master-preflight", REMOTE), (1300, "fail", "master-kubeadm-init", REMOTE),
        (1300, "pre", "never-finished", REMOTE)])
    found = spans(log)
    assert [(s.name, s.start, s.end, s.seconds, s.failed) for s in found] == [
        ("master-preflight", 100, 140, 40, False),
        ("master-kubeadm-init", 130, 1300, 1170, True)]
    assert found[0] == Span("master-preflight", REMOTE, "create", 100, 140,
                            urn("master-preflight"), 1, 3)


def test_stages_name_what_each_resource_is(tmp_path: Path) -> None:
    by_name = {s.name: stage(s) for s in spans(write_log(tmp_path / "e.jsonl", CLUSTER))}
    assert by_name["master"] == "VM create"
    assert by_name["master-wait-cloud-init"] == "boot + cloud-init"
    assert by_name["master-preflight"] == "node step"
    assert by_name["master-kubeadm-init"] == "kubeadm init"
    assert by_name["worker1-kubeadm-join"] == "kubeadm join"
    assert by_name["nginx-gvisor"] == "Kubernetes object"
    assert by_name["master-runtime"] == "component"


def test_critical_path_from_timing_alone(tmp_path: Path) -> None:
    path = critical_path(spans(write_log(tmp_path / "e.jsonl", CLUSTER)))
    # The most work in sequence: init, then one of the two 60 s objects (by timing alone,
    # tenant-b and Flannel look the same), not the token and join (50 s in all).
    assert [step.span.name for step in path] == [
        "master", "master-wait-cloud-init", "master-preflight", "master-kubeadm-init",
        "tenant-b", "nginx-gvisor"]
    assert [step.waited for step in path] == [0, 0, 0, 0, 0, 0]


def test_critical_path_follows_the_states_dependencies(tmp_path: Path) -> None:
    found = spans(write_log(tmp_path / "e.jsonl", CLUSTER))
    path = critical_path(found, dependencies_from_state(state()))
    # Flannel, not the unrelated namespace that finished in the same second.
    assert [step.span.name for step in path] == [
        "master", "master-wait-cloud-init", "master-preflight", "master-kubeadm-init",
        "kube-flannel-ds", "nginx-gvisor"]
    assert sum(step.span.seconds + step.waited for step in path) == 700 - 100


def test_a_component_stands_for_everything_under_it() -> None:
    parent, child, user = urn("rt", COMPONENT), urn("rt-step"), urn("after")
    deps = dependencies_from_state({"deployment": {"resources": [
        {"urn": parent, "type": COMPONENT}, {"urn": child, "type": REMOTE, "parent": parent},
        {"urn": user, "type": REMOTE, "dependencies": [parent],
         "provider": f"{STACK}pulumi:providers:command::default::abc"}]}})
    assert deps[user] == {parent, child, f"{STACK}pulumi:providers:command::default"}


def test_the_command_prints_resources_and_the_critical_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "e.jsonl", CLUSTER)
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state()))
    assert up_stages.main([str(log), "--state", str(state_file)]) == 0
    out = capsys.readouterr().out
    assert "## Resources (12 operations, 600 s from the first to the last)" in out
    assert "## Critical path (6 steps, from the stack's dependencies)" in out
    assert ("| master-kubeadm-init       | kubeadm init      | create |     210 |   500 |"
            "     290 |") in out
    assert "| DaemonSet kube-flannel-ds | Kubernetes object |     500 |" in out
    assert "| kubeadm init               |     290 |" in out
    assert "| boot + cloud-init          |     170 |" in out


def test_an_empty_log_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "e.jsonl").write_text("")
    assert up_stages.main([str(tmp_path / "e.jsonl")]) == 1
    assert "no resource operations" in capsys.readouterr().err
