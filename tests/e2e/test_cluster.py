"""The whole cluster under the real engine, air-gapped: `pulumi up` of the lab stack
(tests/cluster/stack.py: every artifact from the lab mirror, `mirrors.offline` on) with libvirt
in the private namespace, through kubeadm init and join to `nginx-gvisor` running under gVisor.
Then `python -m verify` passes every row, a second `up` changes nothing, and `destroy` leaves
libvirt empty. Each resource's duration (from the engine's event log) is printed at the end.

The tests share one deployment and run in file order.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.stack import lab_config, p
from tests.e2e.conftest import TIMINGS
from tests.e2e.engine import REPO_ROOT, LibvirtNamespace, Project
from tests.e2e.events import spans
from tests.lab.mirror import Mirror, ensure_mirror, serve_mirror
from tests.vm.releases import sha256_file

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

STACK = "cluster"
CIDR = "10.21.0.0/24"
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
UP_TIMEOUT_S = 4 * 3600.0


def engine_config(mirror: Mirror, image: Path, kernel: Path, initrd: Path) -> dict[str, Any]:
    """The lab stack on the namespace's libvirt: qemu domains booting the test image (pinned
    by its checksum, so the program verifies it before libvirt reads it)."""
    config = lab_config(mirror, CIDR)
    config[p("network")]["name"] = "cluster"
    config[p("libvirt")] = {
        "uri": "qemu:///system", "storagePool": "default", "baseImage": str(image),
        "baseImageChecksum": f"sha256:{sha256_file(image)}", "domainType": "qemu",
        "boot": {"kernel": str(kernel), "initrd": str(initrd), "cmdline": KERNEL_CMDLINE},
    }
    return config


@dataclass
class Cluster:
    project: Project
    ns: LibvirtNamespace
    kubectl: Path
    kubeconfig: Path
    events: Path

    def pulumi(self, *args: str, check: bool = True, timeout: float = UP_TIMEOUT_S) -> Any:
        return self.project.pulumi(*args, stack=STACK, check=check, timeout=timeout)

    def kubectl_run(self, *args: str, check: bool = True, timeout: float = 300) -> Any:
        return self.ns.run([str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
                           check=check, timeout=timeout)


@pytest.fixture(scope="module")
def mirror() -> Mirror:
    start = time.monotonic()
    built = ensure_mirror()
    TIMINGS["lab mirror (cache lookup or build)"] = time.monotonic() - start
    return built


@pytest.fixture(scope="module")
def cluster(project: Project, libvirt_ns: LibvirtNamespace, image: tuple[Path, Path, Path],
            mirror: Mirror, work: Path) -> Iterator[Cluster]:
    project.init_stack(STACK, engine_config(mirror, *image))
    kubectl = mirror.root / mirror.file(
        f"https://dl.k8s.io/release/{mirror.versions['kubernetes_version']}"
        "/bin/linux/amd64/kubectl").path
    # On every address of the namespace: the NAT network's bridge appears only with `up`.
    with serve_mirror(mirror, libvirt_ns.prefix(), "0.0.0.0"):
        yield Cluster(project, libvirt_ns, kubectl, work / "cluster.kubeconfig",
                      work / "cluster-events.jsonl")


def test_the_stack_fetches_nothing_from_the_internet(cluster: Cluster) -> None:
    stack_file = cluster.project.root / "stacks" / f"Pulumi.{STACK}.yaml"
    listed = cluster.ns.run([sys.executable, "-m", "artifacts", "--internet-only",
                             str(stack_file)], check=False, timeout=120, cwd=REPO_ROOT)
    assert listed.returncode == 0 and listed.stdout == "", listed.stdout + listed.stderr


def test_up_builds_the_whole_cluster_offline(cluster: Cluster) -> None:
    start = time.monotonic()
    result = cluster.pulumi("up", "--yes", "--skip-preview", "--event-log",
                            str(cluster.events), check=False)
    TIMINGS["pulumi up (whole cluster)"] = time.monotonic() - start
    if cluster.events.exists():
        for span in spans(cluster.events):
            if span.seconds >= 10:
                TIMINGS[f"  {span.op} {span.name}"] = float(span.seconds)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    cluster.kubeconfig.write_text(cluster.pulumi("stack", "output", "kubeconfig",
                                                 "--show-secrets", timeout=300).stdout)
    cluster.kubeconfig.chmod(0o600)


def test_nodes_are_ready_with_their_pool_identity(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl_run("get", "nodes", "-o", "json").stdout)["items"]
    ready = {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"]
                                         if c["type"] == "Ready") for n in nodes}
    assert ready == {"master": "True", "worker1": "True"}
    worker = next(n for n in nodes if n["metadata"]["name"] == "worker1")
    assert worker["metadata"]["labels"]["runtime.sandboxed-k8s.io/gvisor"] == "true"


def test_nginx_gvisor_runs_under_gvisor(cluster: Cluster) -> None:
    pod = json.loads(cluster.kubectl_run("get", "pod", "nginx-gvisor", "-o", "json").stdout)
    assert pod["status"]["phase"] == "Running", pod["status"]
    assert pod["spec"]["nodeName"] == "worker1"
    dmesg = cluster.kubectl_run("exec", "nginx-gvisor", "--", "dmesg").stdout
    assert "gVisor" in dmesg, dmesg
    sandbox = cluster.kubectl_run("exec", "nginx-gvisor", "--", "uname", "-r").stdout.strip()
    node = cluster.kubectl_run("get", "node", "worker1", "-o",
                               "jsonpath={.status.nodeInfo.kernelVersion}").stdout.strip()
    assert node and sandbox and sandbox != node


def test_verify_passes_every_row(cluster: Cluster) -> None:
    result = cluster.ns.run([sys.executable, "-m", "verify", "--kubeconfig",
                             str(cluster.kubeconfig), "--timeout", "600"],
                            check=False, timeout=3600, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout


def test_second_up_changes_nothing(cluster: Cluster) -> None:
    start = time.monotonic()
    cluster.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes")
    TIMINGS["pulumi up --expect-no-changes (cluster)"] = time.monotonic() - start


def test_destroy_leaves_nothing_in_libvirt(cluster: Cluster) -> None:
    start = time.monotonic()
    cluster.pulumi("destroy", "--yes", "--skip-preview")
    TIMINGS["pulumi destroy (cluster)"] = time.monotonic() - start
    assert cluster.ns.inventory() == {"domains": [], "volumes": [], "networks": []}
