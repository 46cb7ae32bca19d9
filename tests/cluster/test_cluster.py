"""The whole cluster in VMs, air-gapped, without the engine: the lab stack's graph (real keys
and certificates) run step by step on two VMs that share a bridge in a network namespace the
test creates, every artifact from the lab mirror served on that bridge. kubeadm init on
`master`, join of the gVisor worker `worker1`; then the graph's Kubernetes objects are
server-side applied in dependency order, Flannel and the policy enforcer run, `nginx-gvisor`
runs under gVisor, the proof Jobs succeed and `python -m verify` passes every row. Then day
two: the worker's removal step takes it out of the cluster, its join, run again after every
bootstrap token was deleted, brings it back with a fresh one, and raising `kubernetes.version`
to the next patch release (the mirror holds both) upgrades the cluster in kubeadm's order.

Markers `cluster`, `slow` and `vm`; alone: `tools/test -m cluster tests/cluster`. The tests
share one cluster and run in file order; each stage's duration is printed at the end.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator

import pytest

from tests.apiserver.program import kubernetes_objects, manifest
from tests.cluster.conftest import TIMINGS
from tests.cluster.harness import Cluster, booted_cluster, timed
from tests.cluster.network import CIDR
from tests.cluster.plan import changed_steps, cluster_plan
from tests.cluster.stack import lab_config
from tests.graph.harness import Graph
from tests.lab.mirror import Mirror
from tests.vm.harness import REPO_ROOT, BootedVM

pytestmark = [pytest.mark.slow, pytest.mark.vm, pytest.mark.cluster]

STACK = "lab"
NODES = {"master": "10.19.0.10", "worker1": "10.19.0.11"}
VM_SHAPE = {"master": (2, 3072), "worker1": (1, 2048)}  # vCPUs, MiB (the lab stack's)


@pytest.fixture(scope="module")
def cluster(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with booted_cluster(mirror, lab_config(mirror, CIDR), STACK, NODES, VM_SHAPE,
                        tmp_path_factory.mktemp("cluster")) as booted:
        yield booted


def test_every_remote_step_runs_in_graph_order(cluster: Cluster) -> None:
    for step in cluster.plan.steps:
        cluster.run_step(step)


def test_the_graphs_kubernetes_objects_apply_in_dependency_order(cluster: Cluster) -> None:
    with timed("server-side apply of every Kubernetes object"):
        for registration in kubernetes_objects(cluster.plan.graph):
            cluster.apply(json.dumps(manifest(registration)))


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
            result = cluster.run(removal)
        assert result.rc == 0, f"{attempt}: {result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    nodes = json.loads(cluster.kubectl_run("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["master"]
    # Its DaemonSet pods go with the Node object (the pod garbage collector, within a minute).
    cluster.wait_for("pods -A --field-selector spec.nodeName=worker1",
                     "{.items[*].metadata.name}", "", timeout=600)
    cluster.wait_for("node master", '{.status.conditions[?(@.type=="Ready")].status}', "True",
                     timeout=600)


def nginx_gvisor_declared_again(cluster: Cluster, graph: Graph) -> float:
    """What `up --refresh` does after a drain deleted `nginx-gvisor` (no controller owns it):
    the graph's pod applied again; seconds until it runs."""
    (pod,) = [r for r in kubernetes_objects(graph)
              if r.type == "kubernetes:core/v1:Pod" and r.inputs["metadata"]["name"]
              == "nginx-gvisor"]
    cluster.apply(json.dumps(manifest(pod)))
    return cluster.wait_for("pod nginx-gvisor", "{.status.phase}", "Running")


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
        result = cluster.run(join)
    assert result.rc == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert tokens(master)  # issued for this join
    TIMINGS["worker1 Ready again"] = cluster.wait_for(
        "node worker1", '{.status.conditions[?(@.type=="Ready")].status}', "True")
    label = cluster.kubectl_run("get", "node", "worker1", "-o",
                                r"jsonpath={.metadata.labels.runtime\.sandboxed-k8s\.io/gvisor}")
    assert label.stdout == "true"
    TIMINGS["nginx-gvisor Running again"] = nginx_gvisor_declared_again(cluster,
                                                                        cluster.plan.graph)


def test_an_upgrade_to_the_next_patch_release_follows_kubeadms_procedure(
        cluster: Cluster) -> None:
    """`kubernetes.version` raised to the mirror's upgrade version, and the steps the next
    `pulumi up` would run (those whose command or stdin changed) run in graph order: the
    install steps leave the running kubelets alone, `kubeadm-init` finds its control plane,
    then the upgrade steps take `master` through `kubeadm upgrade apply` and `worker1`
    through its drain, new kubelet, `kubeadm upgrade node` and uncordon."""
    upgraded = cluster_plan(lab_config(cluster.mirror, CIDR, upgraded=True), STACK,
                            cluster.providers)
    version = "v" + upgraded.graph.stack_outputs["deployed"][0]["kubernetesVersion"]
    assert version == cluster.mirror.versions["upgrade_kubernetes_version"]
    steps = changed_steps(cluster.plan, upgraded)
    assert [s.name for s in steps if s.name.endswith("-upgrade")] == ["master-upgrade",
                                                                      "worker1-upgrade"]
    assert {s.name for s in steps} == {"master-kubernetes-tools", "worker1-kubernetes-tools",
                                       "master-kubeadm-init", "master-upgrade",
                                       "worker1-upgrade"}
    with timed("upgrade: every changed step"):
        for step in steps:
            cluster.run_step(step)
    for node in NODES:  # a restarted kubelet reports its version with its next status
        TIMINGS[f"{node} reports kubelet {version}"] = cluster.wait_for(
            f"node {node}", "{.status.nodeInfo.kubeletVersion}", version, timeout=900)
    nodes = json.loads(cluster.kubectl_run("get", "nodes", "-o", "json").stdout)["items"]
    assert not [n["metadata"]["name"] for n in nodes if n["spec"].get("unschedulable")]
    server = json.loads(cluster.kubectl_run("version", "-o", "json").stdout)["serverVersion"]
    assert server["gitVersion"] == version
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        image = cluster.kubectl_run("get", "pod", "-n", "kube-system", f"{component}-master",
                                    "-o", "jsonpath={.spec.containers[0].image}").stdout
        assert image == f"registry.k8s.io/{component}:{version}"
    proxy = cluster.kubectl_run("get", "daemonset", "-n", "kube-system", "kube-proxy", "-o",
                                "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert proxy == f"registry.k8s.io/kube-proxy:{version}"
    for node in NODES:
        cluster.wait_for(f"node {node}", '{.status.conditions[?(@.type=="Ready")].status}',
                         "True")
    # The drain deleted nginx-gvisor (no controller owns it): `up --refresh` declares it
    # again, and it runs under gVisor on the upgraded worker.
    TIMINGS["nginx-gvisor Running after the upgrade"] = nginx_gvisor_declared_again(
        cluster, upgraded.graph)
    assert "gVisor" in cluster.kubectl_run("exec", "nginx-gvisor", "--", "dmesg").stdout
    # The next `up` runs nothing; each upgrade step run again finds nothing to do.
    assert not changed_steps(upgraded, cluster_plan(
        lab_config(cluster.mirror, CIDR, upgraded=True), STACK, cluster.providers))
    for step in steps:
        if step.name.endswith("-upgrade"):
            again = cluster.run(step)
            assert again.rc == 0 and "is up to date" in again.stdout + again.stderr, \
                f"{step.name}: {again.stdout[-2000:]}\n{again.stderr[-2000:]}"
