"""The whole cluster under the real engine, air-gapped: `pulumi up` of the lab stack
(tests/cluster/stack.py: every artifact from the lab mirror, `mirrors.offline` on) with libvirt
in the private namespace, through kubeadm init and join to `nginx-gvisor` running under gVisor.
Then the nodes answer only with their pinned host keys, `python -m verify` passes every row,
the exported state holds no secret in plain text, a second `up` changes nothing, a memory
change takes the worker out of the cluster, replaces its VM and runs every one of its steps
again (join included) until it is Ready, `up --refresh` brings back `nginx-gvisor` (the drain
deleted it). The gVisor pool then grows to two nodes: the preview creates only `worker2`'s
resources (and its removal step) and updates nothing but the maintenance helper's table of
workers; `worker2` is Ready with its pool's label, answers with its pinned host key and runs a
gVisor pod. Back to one node: the preview deletes exactly those resources, the removal drains
`worker2` and deletes its Node, its pods go, libvirt holds nothing of it, and a further `up`
changes nothing. Last, `destroy` leaves libvirt empty. Each resource's duration (from the
engine's event log) is printed at the end.

The tests share one deployment and run in file order.
"""

from __future__ import annotations

import json
import re
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.events import spans
from tests.cluster.stack import lab_config, p
from tests.e2e.conftest import TIMINGS
from tests.e2e.engine import REPO_ROOT, LibvirtNamespace, Project
from tests.e2e.state import PinnedSsh, domain_ids, secret_strings
from tests.lab.mirror import Mirror, ensure_mirror, serve_mirror
from tests.vm.releases import sha256_file

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

STACK = "cluster"
CIDR = "10.21.0.0/24"
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
UP_TIMEOUT_S = 4 * 3600.0
WORKER = "worker1"
CHANGED_WORKER_MEMORY_MIB = 2176
ADDED = "worker2"  # the gVisor pool's second node, added and removed again
# What a node brings into the graph, each named after it: its host key, root and seed volumes
# (the seed built by a local step), its VM, its remote steps, and the components holding them.
ADDED_RESOURCES = {
    ADDED, f"{ADDED}-host-key", f"{ADDED}-root", f"{ADDED}-seed", f"{ADDED}-seed-image",
    f"{ADDED}-runtime", f"{ADDED}-join", f"{ADDED}-removal", f"{ADDED}-upgrade",
    *(f"{ADDED}-{step}" for step in ("wait-cloud-init", "preflight", "pod-firewall",
                                     "containerd", "gvisor", "containerd-config",
                                     "kubernetes-tools", "kubeadm-join")),
    f"master-remove-{ADDED}",  # its removal step, declared now: its `delete` runs as it leaves
}
# The first control plane's maintenance helper drains and uncordons a worker for its upgrade
# only if the caller's address is in its table of workers: the table gains and loses the node.
HELPER = "master-maintenance-helper"
PROBE_POD = "scale-probe"


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

    def kubectl_run(self, *args: str, check: bool = True, timeout: float = 300,
                    stdin: str | None = None) -> Any:
        return self.ns.run([str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
                           check=check, timeout=timeout, stdin=stdin)

    def export(self, *extra: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.pulumi("stack", "export", *extra,
                                                       timeout=300).stdout)
        return state

    def up(self, *extra: str) -> float:
        start = time.monotonic()
        self.pulumi("up", "--yes", "--skip-preview", *extra)
        return time.monotonic() - start


def set_gvisor_pool(cluster: Cluster, names: list[str]) -> None:
    """The stack file's gVisor pool with these nodes (the pool's shape stays)."""
    config = cluster.project.root / "stacks" / f"Pulumi.{STACK}.yaml"
    document = yaml.safe_load(config.read_text())
    pool = document["config"][p("pools")][1]
    assert pool["name"] == "gvisor", pool
    pool.update(count=len(names), names=names)
    config.write_text(yaml.safe_dump(document, sort_keys=False))


def planned_changes(cluster: Cluster) -> dict[str, set[str]]:
    """The preview's operations on every resource it does not leave alone, by name; an update
    is named with the inputs it changes (`update:stdin`)."""
    changes: dict[str, set[str]] = {}
    for step in cluster.project.preview_steps(STACK):
        # The stack itself: its outputs `nodes` and `deployed` name the pool's nodes.
        if step["op"] == "same" or step["urn"].split("::")[-2] == "pulumi:pulumi:Stack":
            continue
        op = step["op"]
        if op == "update":
            old = (step.get("oldState") or {}).get("inputs") or {}
            new = (step.get("newState") or {}).get("inputs") or {}
            op += ":" + ",".join(sorted(k for k in {*old, *new} if old.get(k) != new.get(k)))
        changes.setdefault(step["urn"].rsplit("::", 1)[1], set()).add(op)
    return changes


def pinned_ssh(cluster: Cluster, workdir: Path) -> PinnedSsh:
    addresses = json.loads(cluster.pulumi("stack", "output", "nodes", "--json",
                                          timeout=300).stdout)
    key = cluster.pulumi("stack", "output", "adminSshPrivateKey", "--show-secrets",
                         timeout=300).stdout
    return PinnedSsh(cluster.ns, workdir, addresses,
                     lambda: cluster.export("--show-secrets"), key)


def containerd_runtimes(ssh: PinnedSsh, node: str) -> set[str]:
    """Runtime handlers in the CRI config containerd really loaded."""
    plugins = tomllib.loads(ssh.run(node, "sudo containerd config dump").stdout)["plugins"]
    cri = plugins.get("io.containerd.cri.v1.runtime") or plugins["io.containerd.grpc.v1.cri"]
    return set(cri["containerd"]["runtimes"])


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


def test_every_volume_on_the_host_is_private(cluster: Cluster) -> None:
    # Root disks will hold the cluster CA key, the seeds each node's SSH host private key.
    modes = {path.name: path.stat().st_mode & 0o777 for path in cluster.ns.pool_dir.iterdir()}
    assert any(name.endswith("-seed.iso") for name in modes), modes
    assert modes and set(modes.values()) == {0o600}, modes


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


@pytest.fixture(scope="module")
def ssh(cluster: Cluster, work: Path) -> PinnedSsh:
    return pinned_ssh(cluster, work)


def test_nodes_answer_only_with_their_pinned_host_keys(ssh: PinnedSsh) -> None:
    for node in ssh.addresses:
        assert ssh.run(node, "hostname").stdout.strip() == node
    # The master's key offered for the worker's address: ssh (like the steps) refuses it.
    master_key = ssh.known_hosts["master"].read_text().split(" ", 1)[1]
    wrong = ssh.known_hosts[WORKER].with_name("known_hosts-wrong")
    wrong.write_text(f"{ssh.addresses[WORKER]} {master_key}")
    refused = ssh.run(WORKER, "true", known_hosts=wrong, check=False)
    assert refused.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_containerd_on_each_node_has_its_pool_runtimes(ssh: PinnedSsh) -> None:
    assert {"runc", "runsc"} <= containerd_runtimes(ssh, WORKER)
    assert "runsc" not in containerd_runtimes(ssh, "master")


def test_verify_passes_every_row(cluster: Cluster) -> None:
    result = cluster.ns.run([sys.executable, "-m", "verify", "--kubeconfig",
                             str(cluster.kubeconfig), "--timeout", "600", "-o", "json"],
                            check=False, timeout=3600, cwd=REPO_ROOT)
    report = json.loads(result.stdout)
    failed = [c for c in report["checks"] if c["result"] != "PASS"]
    assert result.returncode == 0 and report["checks"] and not failed, failed or result.stderr


def test_second_up_changes_nothing(cluster: Cluster) -> None:
    start = time.monotonic()
    cluster.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes")
    TIMINGS["pulumi up --expect-no-changes (cluster)"] = time.monotonic() - start


def test_stack_export_holds_no_plaintext_secret(cluster: Cluster) -> None:
    revealed = secret_strings(cluster.export("--show-secrets"))
    assert len(revealed) >= 10
    text = json.dumps(cluster.export())
    assert "PRIVATE KEY-----" not in text
    assert not [s[:12] + "..." for s in revealed if s in text]


def test_a_memory_change_replaces_the_worker_and_provisions_it_again(
        cluster: Cluster, ssh: PinnedSsh) -> None:
    before = domain_ids(cluster.export())
    old_boot = ssh.boot_id(WORKER)
    config = cluster.project.root / "stacks" / f"Pulumi.{STACK}.yaml"
    document = yaml.safe_load(config.read_text())
    document["config"][p("pools")][1]["memoryMiB"] = CHANGED_WORKER_MEMORY_MIB
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    ops: dict[str, set[str]] = {}
    # Remote steps that run a script on the worker: named after it, with a create command (the
    # preview shows the connection, which holds a key, only as "[secret]").
    on_worker: set[str] = set()
    for step in cluster.project.preview_steps(STACK):
        name = step["urn"].rsplit("::", 1)[1]
        ops.setdefault(name, set()).add(step["op"])
        inputs = (step.get("newState") or {}).get("inputs") or {}
        if (step["urn"].split("::")[-2].endswith("command:remote:Command") and "create" in inputs
                and name.startswith(f"{WORKER}-")):
            on_worker.add(name)
    replaced = {"replace", "create-replacement", "delete-replaced"}
    leaves = f"master-remove-{WORKER}"  # runs on the first control plane as the old VM goes
    assert ops[WORKER] & replaced, ops[WORKER]
    assert f"{WORKER}-kubeadm-join" in on_worker
    for name in [*on_worker, leaves]:
        assert ops[name] & replaced, (name, ops[name])
    for name, kinds in ops.items():
        if (name == "master" or name.startswith("master-")) and name != leaves:
            assert kinds == {"same"}, (name, kinds)

    TIMINGS["pulumi up after a memory change (worker replaced)"] = cluster.up()
    after = domain_ids(cluster.export())
    assert after[WORKER] != before[WORKER] and after["master"] == before["master"]
    assert f"{CHANGED_WORKER_MEMORY_MIB * 1024} KiB" in cluster.ns.virsh("dominfo",
                                                                         f"{STACK}-{WORKER}")
    assert ssh.boot_id(WORKER) != old_boot
    assert ssh.steps_run_this_boot(WORKER) == len(on_worker)
    cluster.kubectl_run("wait", "--for=condition=Ready", f"node/{WORKER}", "--timeout=900s",
                        timeout=960)
    # The drain deleted the pods no controller owns (nginx-gvisor): a refresh brings them back.
    TIMINGS["pulumi up --refresh after the replacement"] = cluster.up("--refresh")
    cluster.kubectl_run("wait", "--for=condition=Ready", "pod/nginx-gvisor", "--timeout=900s",
                        timeout=960)
    cluster.up("--expect-no-changes")


def ready_nodes(cluster: Cluster) -> dict[str, str]:
    nodes = json.loads(cluster.kubectl_run("get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"]
                                        if c["type"] == "Ready") for n in nodes}


def probe_pod(node: str) -> str:
    """A gVisor pod pinned to `node` (the proof Job's image, which the lab mirror serves)."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": PROBE_POD, "namespace": "default"},
        "spec": {"runtimeClassName": "gvisor", "nodeName": node, "restartPolicy": "Never",
                 "automountServiceAccountToken": False,
                 "containers": [{"name": "probe", "image": "docker.io/library/busybox:1.36.1",
                                 "command": ["sleep", "3600"]}]}})


def test_scale_out_adds_a_gvisor_node_and_touches_nothing_else(cluster: Cluster,
                                                               work: Path) -> None:
    set_gvisor_pool(cluster, [WORKER, ADDED])
    changes = planned_changes(cluster)
    assert changes == {**{name: {"create"} for name in ADDED_RESOURCES},
                       HELPER: {"update:stdin"}}, changes

    events = work / "scale-out-events.jsonl"
    TIMINGS["pulumi up scale-out (worker2 added)"] = cluster.up("--event-log", str(events))
    for span in spans(events):
        if span.seconds >= 10:
            TIMINGS[f"  {span.op} {span.name}"] = float(span.seconds)
    cluster.kubectl_run("wait", "--for=condition=Ready", f"node/{ADDED}", "--timeout=900s",
                        timeout=960)
    assert ready_nodes(cluster) == {"master": "True", WORKER: "True", ADDED: "True"}
    label = cluster.kubectl_run("get", "node", ADDED, "-o", "jsonpath={.metadata.labels."
                                "runtime\\.sandboxed-k8s\\.io/gvisor}").stdout
    assert label == "true", label
    info = cluster.ns.virsh("dominfo", f"{STACK}-{ADDED}")
    assert re.search(r"^CPU\(s\):\s+1$", info, re.M), info
    # Its host key from the state, pinned: the node answers with exactly that key.
    workdir = work / "scale-out"
    workdir.mkdir()
    ssh = pinned_ssh(cluster, workdir)
    assert ssh.run(ADDED, "hostname").stdout.strip() == ADDED
    assert {"runc", "runsc"} <= containerd_runtimes(ssh, ADDED)

    cluster.kubectl_run("apply", "-f", "-", stdin=probe_pod(ADDED))
    cluster.kubectl_run("wait", "--for=condition=Ready", f"pod/{PROBE_POD}", "--timeout=900s",
                        timeout=960)
    dmesg = cluster.kubectl_run("exec", PROBE_POD, "--", "dmesg").stdout
    assert "gVisor" in dmesg, dmesg


def test_scale_in_removes_the_node_and_everything_of_it(cluster: Cluster) -> None:
    set_gvisor_pool(cluster, [WORKER])
    changes = planned_changes(cluster)
    assert changes == {**{name: {"delete"} for name in ADDED_RESOURCES},
                       HELPER: {"update:stdin"}}, changes

    TIMINGS["pulumi up scale-in (worker2 removed)"] = cluster.up()
    assert ready_nodes(cluster) == {"master": "True", WORKER: "True"}
    # Its pods: the probe went with the drain, its DaemonSet pods with the Node object.
    start = time.monotonic()
    while left := cluster.kubectl_run("get", "pods", "-A", "--field-selector",
                                      f"spec.nodeName={ADDED}", "-o", "name").stdout.split():
        assert time.monotonic() - start < 600, left
        time.sleep(10)
    inventory = cluster.ns.inventory()
    assert f"{STACK}-{ADDED}" not in inventory["domains"], inventory
    assert not [v for v in inventory["volumes"] if v.startswith(f"{STACK}-{ADDED}-")], inventory
    assert f"{STACK}-{WORKER}" in inventory["domains"], inventory
    cluster.up("--expect-no-changes")


def test_destroy_leaves_nothing_in_libvirt(cluster: Cluster) -> None:
    start = time.monotonic()
    cluster.pulumi("destroy", "--yes", "--skip-preview")
    TIMINGS["pulumi destroy (cluster)"] = time.monotonic() - start
    assert cluster.ns.inventory() == {"domains": [], "volumes": [], "networks": []}
