"""Mirrors and the artifact list: an air-gapped stack fetches nothing from the internet."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from artifacts.__main__ import main as artifacts_main
from components.spec import ConfigError, load
from components.spec.artifacts import internet_fetches, partial_mirror_warning, stack_fetches
from tests.test_spec import dev_config

FILES = "http://10.19.0.1:8080"
REGISTRY = "http://10.19.0.1:5000"
MIRRORS = {"files": FILES, "registry": REGISTRY, "apt": f"{FILES}/debian",
           "aptSecurity": f"{FILES}/debian-security"}


def mirrored(**mirrors: Any) -> dict[str, Any]:
    config = dev_config()
    config["mirrors"] = {**MIRRORS, **mirrors}
    return config


def test_a_files_mirror_replaces_every_default_download_url() -> None:
    spec = load(mirrored(), "dev")
    assert spec.kubernetes.kubeadm.base_url == f"{FILES}/dl.k8s.io/release"
    assert spec.containerd.base_url == \
        f"{FILES}/github.com/containerd/containerd/releases/download"
    assert spec.gvisor.base_url == f"{FILES}/storage.googleapis.com/gvisor/releases/release"
    urls = [f.source for f in stack_fetches(spec) if f.kind == "file"]
    assert urls and all(u.startswith(f"{FILES}/") for u in urls)


def test_a_base_url_the_stack_sets_is_kept_under_a_files_mirror() -> None:
    config = mirrored()
    config["runc"] = {**config.get("runc", {}), "baseUrl": "https://artifacts.example/runc"}
    spec = load(config, "dev")
    assert spec.runc.base_url == "https://artifacts.example/runc"
    runc = next(f for f in stack_fetches(spec) if "runc.amd64" in f.source)
    assert runc.origin == "stack"


def test_a_registry_mirror_covers_every_upstream_registry_and_overrides_win() -> None:
    spec = load(mirrored(registries={"docker.io": "https://hub-cache.example"}), "dev")
    images = {f.source: f for f in stack_fetches(spec) if f.kind == "image"}
    assert images["registry.k8s.io/pause:3.10.1"].via == f"{REGISTRY}/v2/registry.k8s.io"
    assert images["docker.io/library/nginx:1.27"].via == "https://hub-cache.example"
    assert all(f.origin == "mirror" for f in images.values())


def test_a_fully_mirrored_offline_stack_is_accepted() -> None:
    config = mirrored(offline=True)
    config["libvirt"]["baseImage"] = "/var/lib/images/debian-12.qcow2"
    spec = load(config, "dev")
    assert internet_fetches(spec) == []
    assert partial_mirror_warning(spec) is None


def test_offline_names_everything_that_would_still_reach_the_internet() -> None:
    config = mirrored(offline=True, registry=None, aptSecurity=None)
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    text = str(error.value)
    assert "mirrors.offline" in text
    assert "image docker.io/library/nginx:1.27" in text
    assert "apt http://deb.debian.org/debian-security" in text
    # The base image at its default URL goes through the files mirror.
    assert "cloud.debian.org" not in text


def test_a_partial_mirror_says_what_still_comes_from_the_internet() -> None:
    spec = load(mirrored(registry=None), "dev")
    warning = partial_mirror_warning(spec)
    assert warning is not None
    assert "registry.k8s.io/kube-apiserver:v1.34.2" in warning
    assert "dl.k8s.io" not in warning
    assert partial_mirror_warning(load(dev_config(), "dev")) is None  # no mirror, no warning


@pytest.mark.parametrize(("mirrors", "key", "reason"), [
    ({"files": "ftp://mirror"}, "mirrors.files", "http(s)"),
    ({"registry": "http://m:5000?x=1"}, "mirrors.registry", "http(s)"),
    ({"registries": {"Docker.IO": "http://m"}}, "mirrors.registries.Docker.IO", "registry host"),
    ({"registries": ["docker.io"]}, "mirrors.registries", "must map"),
    ({"offline": "yes"}, "mirrors.offline", "true or false"),
    ({"typo": 1}, "mirrors.typo", "unknown key"),
])
def test_bad_mirror_settings_are_rejected(mirrors: dict[str, Any], key: str,
                                          reason: str) -> None:
    config = dev_config()
    config["mirrors"] = mirrors
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    assert any(p.startswith(f"{key}:") and reason in p for p in error.value.problems), \
        error.value.problems


@pytest.mark.parametrize(("change", "key"), [
    ({"imageRepository": "Registry.Example/K8s"}, "kubernetes.imageRepository"),
    ({"etcdImageTag": "latest"}, "kubernetes.etcdImageTag"),
    ({"controlPlaneTimeout": "soon"}, "kubernetes.controlPlaneTimeout"),
    ({"leaderElection": {"leaseDuration": "10s"}}, "kubernetes.leaderElection"),
    ({"leaderElection": {"retryPeriod": "fast"}}, "kubernetes.leaderElection.retryPeriod"),
    ({"apiClientTimeout": "long"}, "kubernetes.apiClientTimeout"),
    ({"etcd": {"electionTimeoutMs": 400}}, "kubernetes.etcd"),  # under five heartbeats
    ({"etcd": {"heartbeatIntervalMs": "fast"}}, "kubernetes.etcd.heartbeatIntervalMs"),
    ({"etcd": {"electionTimeoutMs": 60000}}, "kubernetes.etcd.electionTimeoutMs"),
    ({"etcd": {"heartbeatMs": 500}}, "kubernetes.etcd.heartbeatMs"),
])
def test_bad_image_settings_are_rejected(change: dict[str, str], key: str) -> None:
    config = dev_config()
    config["kubernetes"] = {**config["kubernetes"], **change}
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    assert any(p.startswith(f"{key}:") for p in error.value.problems), error.value.problems


def test_a_private_image_repository_renames_the_control_plane_images() -> None:
    config = dev_config()
    config["kubernetes"] = {**config["kubernetes"], "imageRepository": "harbor.example/k8s"}
    k8s = load(config, "dev").kubernetes
    assert k8s.pause_image == "harbor.example/k8s/pause:3.10.1"
    # kubeadm drops CoreDNS's sub-path outside registry.k8s.io.
    assert "harbor.example/k8s/coredns:v1.12.1" in k8s.control_plane_images


def test_base_image_checksum_belongs_to_its_image() -> None:
    digest = "ab" * 32
    config = dev_config()
    config["libvirt"]["baseImageChecksum"] = f"sha256:{digest}"
    config["pools"][2]["baseImage"] = "/var/lib/images/other.qcow2"
    pools = {p.name: p for p in load(config, "dev").pools}
    assert pools["gvisor"].base_image_checksum == f"sha256:{digest}"
    assert pools["plain"].base_image_checksum is None  # its own image, its own (no) pin
    config["libvirt"]["baseImageChecksum"] = "md5:00"
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    assert any(p.startswith("libvirt.baseImageChecksum:") for p in error.value.problems)


def test_the_artifacts_command_lists_a_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert artifacts_main(["dev"]) == 0
    out = capsys.readouterr().out
    assert "https://dl.k8s.io/release/v1.34.2/bin/linux/amd64/kubeadm  sha256:6a2346" in out
    assert "registry.k8s.io/etcd:3.6.5-0" in out
    assert artifacts_main(["dev", "--internet-only", "-o", "json"]) == 1


def test_the_artifacts_command_reports_a_bad_stack(tmp_path: Any,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text("config:\n  sandboxed-k8s:mirrors:\n    files: ftp://x\n")
    assert artifacts_main([str(stack)]) == 2
    assert "mirrors.files" in capsys.readouterr().err
    assert artifacts_main([str(tmp_path / "missing.yaml")]) == 2


def test_an_offline_stack_lists_nothing_from_the_internet(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack = tmp_path / "Pulumi.offline.yaml"
    config = {f"sandboxed-k8s:{k}": v for k, v in mirrored(offline=True).items()}
    config["sandboxed-k8s:libvirt"]["baseImage"] = "/var/lib/images/debian-12.qcow2"
    stack.write_text(yaml.safe_dump({"config": config}))
    assert artifacts_main([str(stack), "--internet-only"]) == 0
    assert capsys.readouterr().out == ""


def test_the_artifacts_command_is_quiet_when_its_reader_stops_early() -> None:
    """`python -m artifacts dev | head -1`: the listing meets a closed pipe, not a traceback."""
    listing = subprocess.Popen([sys.executable, "-m", "artifacts", "dev", "-o", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.close()  # before the interpreter has started: its first write fails
    errors = listing.stderr.read().decode()
    assert listing.wait(timeout=60) == 1
    assert errors == ""
