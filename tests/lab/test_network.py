"""Two VMs of the test image on the lab bridge, inside a network namespace made here, with the
lab mirror served at the bridge's address: they boot with the product's static addressing,
reach each other, and fetch files and image manifests from the mirror, and nothing else."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator

import pytest

from tests.vm.harness import ensure_image

from .conftest import TIMINGS
from .mirror import Mirror, ensure_mirror, serve_mirror
from .network import LabNetwork, LabNode, boot_lab_vms, lab_network

pytestmark = [pytest.mark.slow, pytest.mark.vm, pytest.mark.mirror]


@pytest.fixture(scope="module")
def mirror() -> Mirror:
    return ensure_mirror()


@pytest.fixture(scope="module")
def lab(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[LabNetwork, list[LabNode]]]:
    image = ensure_image()
    workdir = tmp_path_factory.mktemp("lab")
    start = time.monotonic()
    with lab_network() as net, serve_mirror(mirror, net.prefix, net.gateway), \
            boot_lab_vms(image, net, ["lab-node1", "lab-node2"], workdir) as nodes:
        TIMINGS["two VMs: start to SSH"] = time.monotonic() - start
        for node in nodes:
            TIMINGS[f"{node.name}: boot to SSH"] = node.boot_seconds
        yield net, nodes


def tcp_banner(node: LabNode, address: str, port: int) -> str:
    """The first line a TCP server at address:port sends, read from `node` (no ping in the
    image: a banner read proves the round trip)."""
    script = f"exec 3<>/dev/tcp/{address}/{port} && head -n1 <&3"
    return node.vm.run(f"timeout 20 bash -c {shlex.quote(script)}").stdout


def test_both_vms_boot_with_their_static_addresses(
        lab: tuple[LabNetwork, list[LabNode]]) -> None:
    net, nodes = lab
    for node in nodes:
        out = node.vm.run("ip -4 -o addr show dev eth0").stdout
        assert f"inet {node.address}/24" in out
        assert node.vm.run("hostname").stdout.strip() == node.name
        route = node.vm.run("ip route show default").stdout
        assert f"via {net.gateway}" in route


def test_the_vms_reach_each_other(lab: tuple[LabNetwork, list[LabNode]]) -> None:
    _, (a, b) = lab
    assert tcp_banner(a, b.address, 22).startswith("SSH-2.0-")
    assert tcp_banner(b, a.address, 22).startswith("SSH-2.0-")


def test_the_vms_fetch_files_from_the_mirror(
        lab: tuple[LabNetwork, list[LabNode]], mirror: Mirror) -> None:
    net, nodes = lab
    runc = next(f for f in mirror.files if f.url.endswith("/runc.amd64"))
    for node in nodes:
        out = node.vm.run(f"curl -fsS http://{net.gateway}:8080{runc.served_path} | sha256sum")
        assert out.stdout.split()[0] == runc.sha256


def test_the_vms_fetch_image_manifests_from_the_mirror(
        lab: tuple[LabNetwork, list[LabNode]], mirror: Mirror) -> None:
    net, nodes = lab
    pause = mirror.image("registry.k8s.io/pause:3.10.1")
    # The path containerd asks for through a hosts.toml mirror with override_path.
    url = (f"http://{net.gateway}:5000/v2/{pause.repository}/manifests/{pause.tag}")
    accept = "application/vnd.oci.image.manifest.v1+json"
    for node in nodes:
        out = node.vm.run(f"curl -fsS -H 'Accept: {accept}' {url} | sha256sum")
        assert f"sha256:{out.stdout.split()[0]}" == pause.digest


def test_the_bridge_is_the_vms_only_network(lab: tuple[LabNetwork, list[LabNode]]) -> None:
    _, nodes = lab
    for node in nodes:
        links = node.vm.run("ip -o link show").stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo", "eth0"]
