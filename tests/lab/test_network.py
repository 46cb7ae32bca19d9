"""Two VMs of the test image on the lab bridge, inside a network namespace made here, with the
lab mirror served at the bridge's address: they boot with the product's static addressing,
reach each other and nothing else, and fetch files and image manifests from the mirror. Then
the program's node steps install the runtimes and Kubernetes tools on one of them from the
mirror, and containerd pulls images by their upstream names through it. Tests run in file
order on the module's two VMs."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator

import pytest

from tests.vm.harness import ensure_image

from .conftest import TIMINGS
from .mirror import FILES_PORT, REGISTRY_PORT, Mirror, ensure_mirror, serve_mirror
from .network import LabNetwork, LabNode, boot_lab_vms, lab_network
from .steps import mirrored_config, node_steps

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
        out = node.vm.run(
            f"curl -fsS http://{net.gateway}:{FILES_PORT}{runc.served_path} | sha256sum")
        assert out.stdout.split()[0] == runc.sha256


def test_the_vms_fetch_image_manifests_from_the_mirror(
        lab: tuple[LabNetwork, list[LabNode]], mirror: Mirror) -> None:
    net, nodes = lab
    pause = mirror.image("registry.k8s.io/pause:3.10.1")
    # The path containerd asks for through a hosts.toml mirror with override_path.
    url = f"http://{net.gateway}:{REGISTRY_PORT}/v2/{pause.repository}/manifests/{pause.tag}"
    accept = "application/vnd.oci.image.manifest.v1+json"
    for node in nodes:
        out = node.vm.run(f"curl -fsS -H 'Accept: {accept}' {url} | sha256sum")
        assert f"sha256:{out.stdout.split()[0]}" == pause.digest


def test_the_bridge_is_the_vms_only_network(lab: tuple[LabNetwork, list[LabNode]]) -> None:
    _, nodes = lab
    for node in nodes:
        links = node.vm.run("ip -o link show").stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo", "eth0"]


# A gVisor worker's steps, as the program declares them for stacks/Pulumi.dev.yaml's worker1.
STEPS = ("wait-cloud-init", "preflight", "containerd", "gvisor", "containerd-config",
         "kubernetes-tools")
STEP_TIMEOUT_S = 1200.0


def test_the_programs_node_steps_install_everything_from_the_mirror(
        lab: tuple[LabNetwork, list[LabNode]], mirror: Mirror) -> None:
    net, nodes = lab
    vm = nodes[0].vm
    config = mirrored_config("dev", mirror, f"http://{net.gateway}:{FILES_PORT}")
    for step in node_steps(config, "dev", "worker1", STEPS):
        start = time.monotonic()
        result = vm.run(step.create, stdin=step.stdin.encode(), check=False,
                        timeout=STEP_TIMEOUT_S)
        TIMINGS[f"{nodes[0].name}: {step.name}"] = time.monotonic() - start
        assert result.rc == 0, f"{step.name} (rc={result.rc}):\n{result.stdout}{result.stderr}"
    v = mirror.versions
    assert vm.run("/usr/local/bin/kubeadm version -o short").stdout.strip() == \
        v["kubernetes_version"]
    assert v["containerd_version"] in vm.run("/usr/local/bin/containerd --version").stdout
    assert vm.run("/usr/local/sbin/runc --version").stdout.startswith(
        f"runc version {v['runc_version'].removeprefix('v')}")
    assert v["gvisor_version"] in vm.run("/usr/local/bin/runsc --version").stdout
    assert v["crictl_version"] in vm.run("/usr/local/bin/crictl --version").stdout
    assert vm.run("systemctl is-active containerd").stdout.strip() == "active"


@pytest.mark.parametrize("reference", ["registry.k8s.io/pause:3.10.1",
                                       "docker.io/library/busybox:1.36.1"])
def test_containerd_pulls_by_upstream_name_through_a_hosts_toml_mirror(
        lab: tuple[LabNetwork, list[LabNode]], mirror: Mirror, reference: str) -> None:
    """The registry half of the layout contract, with containerd's own resolver: ctr reads
    the same hosts.toml files containerd's CRI plugin does (installed by the steps above)."""
    net, nodes = lab
    vm = nodes[0].vm
    image = mirror.image(reference)
    host = reference.split("/", 1)[0]
    hosts_dir = "/run/sk8s-test-hosts"
    hosts_toml = (f'server = "https://{host}"\n'
                  f'[host."http://{net.gateway}:{REGISTRY_PORT}/v2/{host}"]\n'
                  '  capabilities = ["pull", "resolve"]\n  override_path = true\n')
    vm.run(f"sudo -n mkdir -p {hosts_dir}/{host} && "
           f"sudo -n tee {hosts_dir}/{host}/hosts.toml >/dev/null", stdin=hosts_toml.encode())
    ctr = "sudo -n /usr/local/bin/ctr -n sk8s-lab-test"
    vm.run(f"{ctr} images pull --hosts-dir {hosts_dir} {reference}", timeout=600)
    listed = vm.run(f"{ctr} images ls name=={reference}").stdout
    assert image.digest in listed, listed
