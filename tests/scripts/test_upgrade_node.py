"""upgrade-node.sh: a node whose pins changed follows kubeadm's procedure (the control plane's
own upgrade first, then drained, its runtimes and kubelet replaced, restarted, uncordoned); a
node whose pins did not change is left alone. The node's install steps are fakes here that say
whether they have something to install and refuse to install it on a node not drained."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from components.render.kubeadm import render_upgrade_config, render_upgrade_health_check_job
from components.render.scripts import b64, render_invocation
from tests.scripts.fakes import FakeNode

KUBEADM = b"#!/bin/sh\necho kubeadm 1.35.0\n"
HEALTH_CHECK = render_upgrade_health_check_job("registry.k8s.io/pause:3.10.1")


def fake_step(name: str) -> str:
    """An install step: with CHECK_ONLY=1 status 3 while $FAKE_STATE/pending-<name> exists;
    otherwise it installs (only on a drained node) and nothing is pending any more."""
    return f"""#!/usr/bin/env bash
set -euo pipefail
s=$FAKE_STATE
if [[ ${{CHECK_ONLY:-0}} == 1 ]]; then [[ ! -e $s/pending-{name} ]] || exit 3; exit 0; fi
[[ ${{NODE_DRAINED:-0}} == 1 ]] || {{ echo "{name} ran on a node not drained" >&2; exit 1; }}
[[ ! -e $s/fail-{name} ]] || {{ rm "$s/fail-{name}"; echo "{name} failed" >&2; exit 1; }}
echo "step {name}" >>"$s/calls"
rm -f "$s/pending-{name}"
"""


@pytest.fixture
def node(tmp_path: Path, release_server: tuple[str, Path]) -> FakeNode:
    url, www = release_server
    fake = FakeNode(tmp_path)
    (www / "healthz").write_text("ok")
    (www / "v1.35.0/bin/linux/amd64").mkdir(parents=True)
    (www / "v1.35.0/bin/linux/amd64/kubeadm").write_bytes(KUBEADM)
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    fake.prefix = prefix  # type: ignore[attr-defined]
    fake.url = url  # type: ignore[attr-defined]
    set_kubelet(fake, "v1.34.2")
    (fake.k8s_dir / "kubelet.conf").write_text("kubelet\n")
    (fake.state / "server-version").write_text("v1.34.2")
    (fake.state / "cluster-version").write_text("v1.34.2")
    helper = tmp_path / "helper"
    helper.write_text(render_invocation("node-maintenance.sh", {
        "NODES_B64": b64("10.18.0.13 gvisor-1\n"), "DRAIN_TIMEOUT": "10m"}))
    fake.helper = helper  # type: ignore[attr-defined]
    return fake


def set_kubelet(node: FakeNode, version: str) -> None:
    kubelet = node.prefix / "bin/kubelet"  # type: ignore[attr-defined]
    kubelet.write_text(f"#!/bin/sh\necho 'Kubernetes {version}'\n")
    kubelet.chmod(0o755)


def as_control_plane(node: FakeNode, version: str = "v1.34.2") -> None:
    (node.k8s_dir / "admin.conf").write_text("admin\n")
    (node.k8s_dir / "manifests").mkdir(exist_ok=True)
    (node.k8s_dir / "manifests/kube-apiserver.yaml").write_text(
        f"    image: registry.k8s.io/kube-apiserver:{version}\n")


def upgrade(node: FakeNode, role: str = "worker", version: str = "1.34.2",
            steps: tuple[str, ...] = ("CONTAINERD", "GVISOR", "CONTAINERD_CONFIG", "KUBERNETES")
            ) -> tuple[int, str]:
    env = {"NODE_NAME": "gvisor-1" if role == "worker" else "control-plane-1", "ROLE": role,
           "K8S_VERSION": version, "K8S_BASE_URL": node.url,  # type: ignore[attr-defined]
           "KUBEADM_SHA256": hashlib.sha256(KUBEADM).hexdigest(), "DRAIN_TIMEOUT": "10m",
           "STEPS": " ".join(steps), "PREFIX": str(node.prefix),  # type: ignore[attr-defined]
           "KUBELET_HEALTHZ": f"{node.url}/healthz",  # type: ignore[attr-defined]
           "HEALTH_CHECKS": "2", "HEALTH_CHECK_SECONDS": "0",
           "CLUSTER_CONFIGURATION_B64": b64("kind: ClusterConfiguration\n"),
           "UPGRADE_CONFIGURATION_B64": b64(render_upgrade_config(version, "40m")),
           "HEALTH_CHECK_JOB_B64": b64(HEALTH_CHECK), "HEALTH_CHECK_TIMEOUT": "40m",
           "MAINTENANCE_HOST": "10.18.0.10", "MAINTENANCE_USER": "k8sadmin",
           "MAINTENANCE_KEY_B64": b64("key\n"),
           "MAINTENANCE_KNOWN_HOSTS_B64": b64("10.18.0.10 ssh-ed25519 AAAA\n"),
           "FAKE_HELPER": str(node.helper), "FAKE_CLIENT": "10.18.0.13",  # type: ignore[attr-defined]
           **{f"STEP_{s}_B64": b64(fake_step(s)) for s in steps}}
    result = node.run("upgrade-node.sh", env)
    return result.returncode, result.stderr


def pending(node: FakeNode, *steps: str) -> None:
    for step in steps:
        (node.state / f"pending-{step}").touch()


def done(node: FakeNode) -> list[str]:
    """What changed the node or the cluster, in order."""
    out = []
    for call in node.calls():
        words = call.split()
        if words[0] == "step":
            out.append(words[1])
        elif words[0] == "kubectl" and ({"drain", "uncordon", "replace"} & set(words)):
            out.append(next(w for w in words if w in {"drain", "uncordon", "replace"}))
        elif words[0] == "kubeadm" and words[1] == "upgrade":
            out.append(f"kubeadm upgrade {words[2]}")
        elif words[0] == "systemctl" and words[1] == "restart":
            out.append(f"restart {words[2]}")
        elif words[0] == "ssh":
            out.append(f"ssh {words[-1]}")
    return out


def test_a_node_whose_pins_did_not_change_is_left_alone(node: FakeNode) -> None:
    rc, log = upgrade(node)
    assert rc == 0, log
    assert "gvisor-1 is up to date" in log
    assert done(node) == []


def test_a_new_gvisor_drains_the_worker_first(node: FakeNode) -> None:
    pending(node, "GVISOR")
    rc, log = upgrade(node)
    assert rc == 0, log
    assert done(node) == ["ssh drain", "drain", "GVISOR", "CONTAINERD_CONFIG", "KUBERNETES",
                          "restart kubelet", "ssh uncordon", "uncordon"]
    # The worker has no admin credentials: the first control plane's helper drains it, by
    # its address.
    drain = next(c for c in node.calls("kubectl") if " drain " in c)
    assert drain.startswith("kubectl drain gvisor-1 --ignore-daemonsets")
    # Done: the next run has nothing to do.
    assert "up to date" in upgrade(node)[1]


def test_a_worker_follows_kubeadms_procedure(node: FakeNode) -> None:
    pending(node, "KUBERNETES")
    (node.state / "server-version").write_text("v1.35.0")  # the control planes went first
    rc, log = upgrade(node, version="1.35.0")
    assert rc == 0, log
    assert done(node) == ["ssh drain", "drain", "kubeadm upgrade node", "KUBERNETES",
                          "restart kubelet", "ssh uncordon", "uncordon"]
    installed = node.prefix / "bin/kubeadm"  # type: ignore[attr-defined]
    assert installed.read_bytes() == KUBEADM
    assert node.read("kubeadm-config") == render_upgrade_config("1.35.0", "40m")


def test_a_worker_never_gets_ahead_of_the_control_plane(node: FakeNode) -> None:
    pending(node, "KUBERNETES")
    rc, log = upgrade(node, version="1.35.0")  # the API server still runs v1.34.2
    assert rc != 0
    assert "the control plane runs v1.34.2: a kubelet must not be newer than its API server" in log
    assert done(node) == []


@pytest.mark.parametrize(("running", "target", "fragment"), [
    ("v1.33.4", "1.35.0", "skips a minor version"),
    ("v1.34.2", "1.34.1", "cannot go down"),
])
def test_skew_is_checked_on_the_node_too(node: FakeNode, running: str, target: str,
                                         fragment: str) -> None:
    set_kubelet(node, running)
    (node.state / "server-version").write_text("v1.36.0")
    pending(node, "KUBERNETES")
    rc, log = upgrade(node, version=target)
    assert rc != 0 and fragment in log
    assert done(node) == []


def test_the_first_control_plane_runs_kubeadm_upgrade_apply_before_its_drain(
        node: FakeNode) -> None:
    as_control_plane(node)
    pending(node, "KUBERNETES")
    rc, log = upgrade(node, role="first", version="1.35.0",
                      steps=("CONTAINERD", "CONTAINERD_CONFIG", "KUBERNETES"))
    assert rc == 0, log
    assert done(node) == ["replace", "kubeadm upgrade apply", "drain", "KUBERNETES",
                          "restart kubelet", "uncordon"]
    (apply,) = [c for c in node.calls("kubeadm") if c.startswith("kubeadm upgrade apply")]
    # The program's UpgradeConfiguration (version, waits); kubeadm's question answered.
    assert apply.startswith("kubeadm upgrade apply --config ") and "--yes" not in apply
    assert node.read("kubeadm-config") == render_upgrade_config("1.35.0", "40m")
    assert node.read("kubeadm-stdin") == "y\n"
    # kubeadm's 15-second Job check is skipped; the same Job ran first, with the stack's wait.
    assert node.read("health-check-job") == HEALTH_CHECK
    waits = [c for c in node.calls("kubectl") if " wait --for=condition=complete " in c]
    assert waits and waits[0].endswith("--timeout=40m")
    assert node.read("replaced") == "kind: ConfigMap\n"  # the program's ClusterConfiguration
    # Its own admin credentials drain it; no helper.
    assert not node.calls("ssh")
    assert any(c.startswith("kubectl --kubeconfig") and " drain control-plane-1 " in c
               for c in node.calls("kubectl"))


def test_another_control_plane_follows_the_cluster(node: FakeNode) -> None:
    as_control_plane(node)
    (node.state / "cluster-version").write_text("v1.35.0")  # the first one went first
    pending(node, "KUBERNETES")
    rc, log = upgrade(node, role="control-plane", version="1.35.0")
    assert rc == 0, log
    assert done(node)[:2] == ["kubeadm upgrade node", "drain"]


def test_another_control_plane_waits_for_the_first(node: FakeNode) -> None:
    as_control_plane(node)  # the cluster still runs v1.34.2
    rc, log = upgrade(node, role="control-plane", version="1.35.0")
    assert rc != 0 and "is the first control plane upgraded?" in log
    assert "drain" not in done(node)


def test_a_run_that_stopped_half_way_is_finished_by_the_next(node: FakeNode) -> None:
    pending(node, "GVISOR")
    (node.state / "fail-GVISOR").touch()
    rc, log = upgrade(node)
    assert rc != 0 and "the GVISOR step failed on the drained node" in log
    assert "stays cordoned" in log and "uncordon" not in done(node)
    rc, log = upgrade(node)
    assert rc == 0, log
    assert done(node)[-2:] == ["ssh uncordon", "uncordon"]


def test_a_failed_uncordon_is_retried_though_nothing_is_left_to_install(
        node: FakeNode) -> None:
    pending(node, "GVISOR")
    (node.state / "uncordon-fails").touch()
    assert upgrade(node)[0] != 0
    rc, log = upgrade(node)
    assert rc == 0, log
    assert "up to date" not in log and done(node)[-1] == "uncordon"


def test_the_upgrade_stops_before_kubeadm_when_the_cluster_runs_no_pod(node: FakeNode) -> None:
    as_control_plane(node)
    pending(node, "KUBERNETES")
    (node.state / "job-never-completes").touch()
    rc, log = upgrade(node, role="first", version="1.35.0",
                      steps=("CONTAINERD", "CONTAINERD_CONFIG", "KUBERNETES"))
    assert rc != 0 and "the cluster ran no pod within 40m" in log, log
    assert not [c for c in node.calls("kubeadm") if c.startswith("kubeadm upgrade")]
    assert "drain" not in done(node)
