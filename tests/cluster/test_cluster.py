"""The whole cluster in VMs, air-gapped, without the engine: the lab stack's graph (real keys
and certificates) run step by step on two VMs that share a bridge in a network namespace the
test creates, every artifact from the lab mirror served on that bridge. kubeadm init on
`master`, join of the gVisor worker `worker1`; then the graph's Kubernetes objects are
server-side applied in dependency order, Flannel and the policy enforcer run, `nginx-gvisor`
runs under gVisor, the proof Jobs succeed and `python -m verify` passes every row. Then day
two: the worker's removal step takes it out of the cluster, and its join, run again after
every bootstrap token was deleted, brings it back with a fresh one.

Markers `cluster`, `slow` and `vm`; alone: `tools/test -m cluster tests/cluster`. The tests
share one cluster and run in file order; each stage's duration is printed at the end.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.spec import node_mac
from tests.apiserver.program import kubernetes_objects, manifest
from tests.cluster.conftest import TIMINGS
from tests.cluster.network import CIDR, ClusterNetwork, cluster_network
from tests.cluster.plan import ClusterPlan, cluster_plan
from tests.cluster.stack import lab_config
from tests.lab.mirror import Mirror, ensure_mirror, serve_mirror
from tests.vm.harness import REPO_ROOT, BootedVM, boot_vm, ensure_image

pytestmark = [pytest.mark.slow, pytest.mark.vm, pytest.mark.cluster]

STACK = "lab"
NODES = {"master": "10.19.0.10", "worker1": "10.19.0.11"}
VM_SHAPE = {"master": (2, 3072), "worker1": (1, 2048)}  # vCPUs, MiB (the lab stack's)
DISK = "12G"  # the image's 4 GB root grows to this; preflight wants 5 GiB free
STEP_TIMEOUT_S = 3600.0
READY_TIMEOUT_S = 3600.0


@dataclass
class Cluster:
    plan: ClusterPlan
    network: ClusterNetwork
    vms: dict[str, BootedVM]
    kubectl: Path
    kubeconfig: Path

    def kubectl_run(self, *args: str, stdin: str | None = None, check: bool = True,
                    timeout: float = 300.0) -> Any:
        return self.network.run([str(self.kubectl), "--kubeconfig", str(self.kubeconfig),
                                 *args], stdin=stdin, check=check, timeout=timeout)

    def wait_for(self, what: str, jsonpath: str, expected: str,
                 timeout: float = READY_TIMEOUT_S) -> float:
        start = time.monotonic()
        last = ""
        while time.monotonic() - start < timeout:
            proc = self.kubectl_run("get", *what.split(), "-o", f"jsonpath={jsonpath}",
                                    check=False)
            last = proc.stdout.strip() or proc.stderr.strip()
            if proc.returncode == 0 and last == expected:
                return time.monotonic() - start
            time.sleep(10)
        raise AssertionError(f"{what}: {jsonpath} is {last!r}, not {expected!r}, after "
                             f"{timeout:.0f} s")


def timed(name: str) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def measure() -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            TIMINGS[name] = time.monotonic() - start
    return measure()


@pytest.fixture(scope="module")
def mirror() -> Mirror:
    with timed("lab mirror (cache lookup or build)"):
        return ensure_mirror()


@pytest.fixture(scope="module")
def cluster(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cluster")
    plan = cluster_plan(lab_config(mirror, CIDR), STACK)
    image = ensure_image()
    key = work / "admin_ed25519"
    key.write_text(plan.admin_private_key)
    key.chmod(0o600)
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(plan.kubeconfig)
    kubeconfig.chmod(0o600)
    kubectl = mirror.root / mirror.file(
        f"https://dl.k8s.io/release/{mirror.versions['kubernetes_version']}"
        "/bin/linux/amd64/kubectl").path
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(cluster_network(NODES))
        stack.enter_context(serve_mirror(mirror, network.prefix, network.gateway))
        vms = {}
        with timed("boot both VMs to SSH"):
            for node in NODES:
                seed = plan.cloud_init(node)
                user_data = yaml.safe_load(seed["user-data"])
                cpus, memory = VM_SHAPE[node]
                vms[node] = stack.enter_context(boot_vm(
                    image, seed["user-data"], admin_user=user_data["users"][0]["name"],
                    private_key=key, host_public_key=user_data["ssh_keys"]["ed25519_public"],
                    meta_data=seed["meta-data"], network_config=seed["network-config"],
                    workdir=work / node, memory_mb=memory, cpus=cpus, disk_size=DISK,
                    mac=node_mac(STACK, node), tap=network.taps[node]))
        yield Cluster(plan, network, vms, kubectl, kubeconfig)


def test_every_remote_step_runs_in_graph_order(cluster: Cluster) -> None:
    by_host = {address: cluster.vms[node] for node, address in NODES.items()}
    for step in cluster.plan.steps:
        start = time.monotonic()
        result = by_host[step.host].run(step.create, stdin=step.stdin.encode(), check=False,
                                        timeout=STEP_TIMEOUT_S)
        TIMINGS[f"step {step.name}"] = time.monotonic() - start
        assert result.rc == 0, f"{step.name} failed (rc={result.rc}):\n" \
                               f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"


def test_the_graphs_kubernetes_objects_apply_in_dependency_order(cluster: Cluster) -> None:
    with timed("server-side apply of every Kubernetes object"):
        for registration in kubernetes_objects(cluster.plan.graph):
            cluster.kubectl_run("apply", "--server-side", "--field-manager=sandboxed-k8s",
                                "-f", "-", stdin=json.dumps(manifest(registration)))


def test_both_nodes_become_ready(cluster: Cluster) -> None:
    for node in NODES:
        TIMINGS[f"{node} Ready"] = cluster.wait_for(
            f"node {node}", '{.status.conditions[?(@.type=="Ready")].status}', "True")


def test_nginx_gvisor_runs_under_gvisor(cluster: Cluster) -> None:
    TIMINGS["nginx-gvisor Running"] = cluster.wait_for("pod nginx-gvisor", "{.status.phase}",
                                                       "Running")
    pod = json.loads(cluster.kubectl_run("get", "pod", "nginx-gvisor", "-o", "json").stdout)
    assert pod["spec"]["nodeName"] == "worker1"
    dmesg = cluster.kubectl_run("exec", "nginx-gvisor", "--", "dmesg").stdout
    assert "gVisor" in dmesg, dmesg
    sandbox = cluster.kubectl_run("exec", "nginx-gvisor", "--", "uname", "-r").stdout.strip()
    node = cluster.vms["worker1"].run("uname -r").stdout.strip()
    assert sandbox and sandbox != node


def test_the_proof_jobs_succeed(cluster: Cluster) -> None:
    jobs = json.loads(cluster.kubectl_run("get", "jobs", "-n", "sandbox-proof", "-o",
                                          "json").stdout)["items"]
    assert jobs
    for job in jobs:
        name = job["metadata"]["name"]
        TIMINGS[f"job {name} complete"] = cluster.wait_for(
            f"job {name} -n sandbox-proof", "{.status.succeeded}", "1")


def test_verify_passes_every_row(cluster: Cluster) -> None:
    with timed("python -m verify"):
        result = cluster.network.run(
            [sys.executable, "-m", "verify", "--kubeconfig", str(cluster.kubeconfig),
             "--timeout", "600", "-o", "json"],
            check=False, timeout=3600, cwd=REPO_ROOT)
    report = json.loads(result.stdout)
    failed = [c for c in report["checks"] if c["result"] != "PASS"]
    assert result.returncode == 0 and report["checks"] and not failed, failed or result.stderr


def test_removing_the_worker_drains_it_and_deletes_its_node(cluster: Cluster) -> None:
    """What `pulumi up` runs when a worker leaves its pool: the removal step's `delete` on the
    first control plane. Run twice: a second run finds the node gone and succeeds."""
    removal = cluster.plan.removals["master-remove-worker1"]
    for attempt in ("first", "again"):
        with timed(f"removal of worker1 ({attempt})"):
            result = cluster.vms["master"].run(removal.create, stdin=removal.stdin.encode(),
                                               check=False, timeout=STEP_TIMEOUT_S)
        assert result.rc == 0, f"{attempt}: {result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    nodes = json.loads(cluster.kubectl_run("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["master"]
    # Its DaemonSet pods go with the Node object (the pod garbage collector, within a minute).
    cluster.wait_for("pods -A --field-selector spec.nodeName=worker1",
                     "{.items[*].metadata.name}", "", timeout=600)
    cluster.wait_for("node master", '{.status.conditions[?(@.type=="Ready")].status}', "True",
                     timeout=600)


TOKEN = "^[a-z0-9]{6}\\.[a-z0-9]{16}"  # a bootstrap token, first in its row of `kubeadm token list`


def tokens(vm: BootedVM) -> list[str]:
    listed = vm.run("sudo -n kubeadm token list").stdout
    return [line.split()[0] for line in listed.splitlines() if re.match(TOKEN, line)]


def test_the_removed_worker_joins_again_after_every_token_expired(cluster: Cluster) -> None:
    """A join run again long after the last `up` (every bootstrap token gone) gets a fresh
    token from the first control plane's issuer; the node comes back with its pool's runtime
    label and runs gVisor pods again."""
    master, worker = cluster.vms["master"], cluster.vms["worker1"]
    master.run(f"sudo -n kubeadm token list | grep -oE '{TOKEN}' "
               "| xargs -r sudo -n kubeadm token delete")
    assert not tokens(master)
    worker.run("sudo -n kubeadm reset --force")
    (join,) = [s for s in cluster.plan.steps if s.name == "worker1-kubeadm-join"]
    with timed("join of worker1 again, every token expired"):
        result = worker.run(join.create, stdin=join.stdin.encode(), check=False,
                            timeout=STEP_TIMEOUT_S)
    assert result.rc == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert tokens(master)  # issued for this join
    TIMINGS["worker1 Ready again"] = cluster.wait_for(
        "node worker1", '{.status.conditions[?(@.type=="Ready")].status}', "True")
    label = cluster.kubectl_run("get", "node", "worker1", "-o",
                                r"jsonpath={.metadata.labels.runtime\.sandboxed-k8s\.io/gvisor}")
    assert label.stdout == "true"
    (pod,) = [r for r in kubernetes_objects(cluster.plan.graph)
              if r.type == "kubernetes:core/v1:Pod" and r.inputs["metadata"]["name"]
              == "nginx-gvisor"]
    cluster.kubectl_run("apply", "--server-side", "--field-manager=sandboxed-k8s", "-f", "-",
                        stdin=json.dumps(manifest(pod)))
    TIMINGS["nginx-gvisor Running again"] = cluster.wait_for(
        "pod nginx-gvisor", "{.status.phase}", "Running")
