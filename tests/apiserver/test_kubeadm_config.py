"""kubeadm itself reads our configuration: every init, join and upgrade document of each
stack validates, and the images it would pull are exactly those the artifact list names (so a
mirror filled from `python -m artifacts` holds what kubeadm asks for)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from components.render.kubeadm import (
    ClusterConfig,
    NodeRegistration,
    render_init_config,
    render_join_config,
    render_upgrade_config,
)
from components.spec.artifacts import stack_images
from tests.apiserver.program import stack_spec
from tests.graph.conftest import stack_graph
from tests.graph.test_graph import script_params

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]

CONFIGS = {"kubeadm-init.sh": "KUBEADM_CONFIG_B64", "kubeadm-join.sh": "KUBEADM_JOIN_CONFIG_B64",
           "upgrade.sh": "UPGRADE_CONFIGURATION_B64"}


def kubeadm_documents(stack: str) -> dict[str, str]:
    """Step name -> the kubeadm configuration it ships."""
    out = {}
    for r in stack_graph(stack).of_type("command:remote:Command"):
        for name, param in CONFIGS.items():
            if r.name.endswith(name.removesuffix(".sh")):
                out[r.name] = base64.b64decode(script_params(r)[param]).decode()
    return out


def kubeadm(bins: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bins["kubeadm"]), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_kubeadm_validates_every_configuration(stack: str, apiserver_bins: dict[str, Path],
                                               tmp_path: Path) -> None:
    documents = kubeadm_documents(stack)
    assert any(n.endswith("kubeadm-init") for n in documents)
    assert any(n.endswith("kubeadm-join") for n in documents)
    assert any(n.endswith("-upgrade") for n in documents)
    for name, text in documents.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        result = kubeadm(apiserver_bins, "config", "validate", "--config", str(path))
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_kubeadm_validates_a_slow_hosts_waits(apiserver_bins: dict[str, Path],
                                             tmp_path: Path) -> None:
    """With kubernetes.controlPlaneTimeout above kubeadm's own waits, every one of them is set
    (the stacks' 4m leaves discovery, tlsBootstrap and upgradeManifests at kubeadm's); etcd's
    raft timers raised."""
    plane = NodeRegistration("cp2", {}, (), True)
    cluster = ClusterConfig("1.34.2", "demo", "10.17.0.5:6443", "10.244.0.0/16",
                            "10.96.0.0/12", etcd_timers=(500, 5000))
    documents = {
        "init": render_init_config(cluster, plane, "10.17.0.10", "abcdef.0123456789abcdef",
                                   "30m", "40m"),
        "join": render_join_config(plane, "10.17.0.5:6443", "abcdef.0123456789abcdef",
                                   "sha256:" + "b" * 64, "10.17.0.11", "40m"),
        "upgrade": render_upgrade_config("1.34.3", "40m"),
    }
    for name, text in documents.items():
        assert "etcdAPICall: 40m" in text or "election-timeout" in text
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        result = kubeadm(apiserver_bins, "config", "validate", "--config", str(path))
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_kubeadm_pulls_exactly_the_listed_control_plane_images(
        stack: str, apiserver_bins: dict[str, Path], tmp_path: Path) -> None:
    init = next(t for n, t in kubeadm_documents(stack).items() if n.endswith("kubeadm-init"))
    path = tmp_path / "init.yaml"
    path.write_text(init)
    result = kubeadm(apiserver_bins, "config", "images", "list", "--config", str(path))
    assert result.returncode == 0, result.stderr
    spec = stack_spec(stack)
    assert result.stdout.split() == list(spec.kubernetes.control_plane_images)
    assert set(result.stdout.split()) <= set(stack_images(spec))


def test_kubeadm_refuses_a_broken_configuration(apiserver_bins: dict[str, Path],
                                                tmp_path: Path) -> None:
    # Proves the validation above can fail.
    init = next(t for n, t in kubeadm_documents("dev").items() if n.endswith("kubeadm-init"))
    path = tmp_path / "init.yaml"
    path.write_text(init.replace("controlPlaneComponentHealthCheck", "controlPlaneHealthCheck"))
    assert kubeadm(apiserver_bins, "config", "validate", "--config", str(path)).returncode != 0
