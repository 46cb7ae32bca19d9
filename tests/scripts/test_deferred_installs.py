"""On a node that runs pods (joined: kubelet.conf exists) a new runtime or Kubernetes release is
not swapped in under its pods: the install step leaves it to the node's upgrade step, which
drains the node and runs the install again with NODE_DRAINED=1. CHECK_ONLY=1 only finds what
would be installed (status 3), downloading nothing."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_script
from tests.scripts.test_scripts import FAKE_RUNSC, gvisor_env, kata_env, publish, publish_kata


def joined(tmp_path: Path) -> dict[str, str]:
    k8s = tmp_path / "etc-kubernetes"
    k8s.mkdir(exist_ok=True)
    (k8s / "kubelet.conf").write_text("kubelet\n")
    return {"K8S_DIR": str(k8s)}


def test_a_new_kata_waits_for_the_drained_node(release_server: tuple[str, Path],
                                              tmp_path: Path, state_dir: Path) -> None:
    url, www = release_server
    root = tmp_path / "root"
    old = kata_env(url, root, state_dir, "3.7.0", publish_kata(www, "3.7.0", "old"))
    run_script("install-kata.sh", old, check=True)  # before the node joined
    new = {**kata_env(url, root, state_dir, "3.8.0", publish_kata(www, "3.8.0", "new")),
           **joined(tmp_path)}
    shim = root / "usr/local/bin/containerd-shim-kata-v2"

    serving = run_script("install-kata.sh", new, check=True)
    assert "Kata 3.8.0 waits for this node's upgrade step" in serving.stderr
    assert "echo old" in shim.read_text()

    checked = run_script("install-kata.sh", {**new, "CHECK_ONLY": "1"})
    assert checked.returncode == 3 and "to install: Kata 3.8.0" in checked.stderr
    assert "echo old" in shim.read_text()

    run_script("install-kata.sh", {**new, "NODE_DRAINED": "1"}, check=True)
    assert "echo new" in shim.read_text()
    # Installed: nothing left to do, in either mode.
    assert run_script("install-kata.sh", {**new, "CHECK_ONLY": "1"}).returncode == 0
    assert "already installed" in run_script("install-kata.sh", new, check=True).stderr


def test_a_node_not_yet_joined_installs_at_once(release_server: tuple[str, Path],
                                                tmp_path: Path, state_dir: Path) -> None:
    url, www = release_server
    root = tmp_path / "root"
    env = {**kata_env(url, root, state_dir, "3.7.0", publish_kata(www, "3.7.0", "a")),
           "K8S_DIR": str(tmp_path / "etc-kubernetes")}  # no kubelet.conf
    result = run_script("install-kata.sh", env, check=True)
    assert "Kata 3.7.0 installed" in result.stderr


def test_a_new_gvisor_waits_for_the_drained_node(release_server: tuple[str, Path],
                                                tmp_path: Path, state_dir: Path) -> None:
    url, www = release_server
    prefix = tmp_path / "prefix"
    for release, tag in (("20251118.0", "old"), ("20260101.0", "new")):
        publish(www, f"{release}/x86_64/runsc", FAKE_RUNSC.format(tag=tag).encode())
        publish(www, f"{release}/x86_64/containerd-shim-runsc-v1", b"#!/bin/sh\n")
    run_script("install-gvisor.sh", gvisor_env(url, prefix, state_dir, "binaries"), check=True)
    new = {**gvisor_env(url, prefix, state_dir, "binaries", release="20260101.0"),
           **joined(tmp_path)}
    serving = run_script("install-gvisor.sh", new, check=True)
    assert "gVisor 20260101.0 waits for this node's upgrade step" in serving.stderr
    assert "version old" in (prefix / "bin/runsc").read_text()
    assert run_script("install-gvisor.sh", {**new, "CHECK_ONLY": "1"}).returncode == 3
    run_script("install-gvisor.sh", {**new, "NODE_DRAINED": "1"}, check=True)
    assert "version new" in (prefix / "bin/runsc").read_text()
