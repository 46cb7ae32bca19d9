"""A `lab` stack deployed for real: one control plane and one gVisor worker as small VMs under
qemu emulation (domain type `qemu`, direct kernel boot of the test image), every node download
from a release mirror inside the namespace.

`pulumi up` runs through the node layer; `kubernetes-tools` (kubeadm, kubelet, kubectl are not
in the mirror), `kubeadm init` and everything after it are left out with `--exclude ...
--exclude-dependents` until air-gapped installs bring the images. Then, in order: a second
`up` changes nothing; a gVisor container runs on the worker; a memory change replaces the
worker's VM and runs every one of its node steps again; `pulumi stack export` holds no secret
in plain text; `pulumi destroy` leaves libvirt empty.

The tests share one deployment and run in file order.
"""

from __future__ import annotations

import base64
import copy
import json
import shlex
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import TIMINGS
from tests.e2e.engine import PROJECT, LibvirtNamespace, Project
from tests.graph.harness import stack_config
from tests.node.nodes import TEST_IMAGE
from tests.node.oci import build_busybox_archive, pause_entrypoint
from tests.node.tools import NodeTools, containerd_version, discover
from tests.vm.harness import CommandFailed, RunResult
from tests.vm.releases import ReleaseMirror, build_mirror
from tests.vm.test_node_scripts import CRICTL, RemoteCrictl, sandbox_image

pytestmark = [
    pytest.mark.slow, pytest.mark.e2e,
    # The engine refuses an `--exclude` of kubeadm init on a fresh stack now that the Kubernetes
    # provider's kubeconfig waits for the control plane (providers are always part of a run).
    # The whole-cluster test (test_cluster.py) covers up, a second up and destroy; this
    # node-layer flow is to be folded into it.
    pytest.mark.skip(reason="excludes kubeadm init, which the Kubernetes provider now waits "
                            "for; see test_cluster.py"),
]

STACK = "lab"
CIDR = "10.19.0.0/24"
GATEWAY = "10.19.0.1"  # libvirt gives the NAT network's bridge the first address
MIRROR_PORT = 8080  # inside the namespace: nothing else listens there
NODES = {"master": "10.19.0.10", "worker1": "10.19.0.11"}
WORKER = "worker1"
MEMORY_MIB = 1800
CHANGED_MEMORY_MIB = 1900
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
# Left out (with everything that depends on them): the Kubernetes binaries are not in the
# mirror, and kubeadm init needs the control plane's images.
EXCLUDED_STEPS = ("master-kubernetes-tools", "worker1-kubernetes-tools", "master-kubeadm-init")
NODE_STEPS = {
    "master": ("wait-cloud-init", "preflight", "containerd", "containerd-config"),
    "worker1": ("wait-cloud-init", "preflight", "containerd", "gvisor", "containerd-config"),
}
UP_TIMEOUT_S = 3600.0


def p(key: str) -> str:
    return f"{PROJECT}:{key}"


def lab_config(image: Path, kernel: Path, initrd: Path, mirror: ReleaseMirror,
               memory_mib: int = MEMORY_MIB) -> dict[str, Any]:
    """stacks/Pulumi.dev.yaml reshaped into the lab: two small qemu VMs, mirror downloads."""
    config = copy.deepcopy(stack_config("dev"))
    base = f"http://{GATEWAY}:{MIRROR_PORT}"
    config[p("libvirt")] = {
        "uri": "qemu:///system", "storagePool": "default", "baseImage": str(image),
        "domainType": "qemu",
        "boot": {"kernel": str(kernel), "initrd": str(initrd), "cmdline": KERNEL_CMDLINE},
    }
    config[p("network")] = {"name": "lab", "mode": "nat", "cidr": CIDR}
    config[p("kubernetes")]["clusterName"] = "sandboxed-k8s-lab"
    config[p("pools")] = [
        {"name": "control-plane", "role": "control-plane", "names": ["master"], "cpu": 2,
         "memoryMiB": MEMORY_MIB, "diskGiB": 10},
        {"name": "gvisor", "role": "worker", "names": [WORKER], "runtimes": ["gvisor"],
         "cpu": 1, "memoryMiB": memory_mib, "diskGiB": 10},
    ]
    config[p("containerd")] = {"version": mirror.containerd.version,
                               "sha256": mirror.containerd.sha256,
                               "baseUrl": f"{base}/containerd"}
    config[p("runc")] = {"version": mirror.runc.version, "sha256": mirror.runc.sha256,
                         "baseUrl": f"{base}/runc"}
    config[p("cniPlugins")] = {"version": mirror.cni_plugins.version,
                               "sha256": mirror.cni_plugins.sha256,
                               "baseUrl": f"{base}/cni-plugins"}
    config[p("gvisor")] = {
        "release": mirror.gvisor_release, "layout": "binaries",
        "runscSha512": mirror.gvisor_sha512["runsc"],
        "shimSha512": mirror.gvisor_sha512["containerd-shim-runsc-v1"],
        "baseUrl": f"{base}/gvisor", "platform": "systrap",
    }
    config[p("tenants")] = [{"name": "tenant-a"}]
    return config


def excluded_urns(project: Project) -> list[str]:
    """The URNs of EXCLUDED_STEPS, as the engine plans them."""
    urns = {s["urn"].rsplit("::", 1)[1]: s["urn"] for s in project.preview_steps(STACK)
            if s["newState"]["type"] == "command:remote:Command"}
    return [urns[name] for name in EXCLUDED_STEPS]


@dataclass
class Lab:
    project: Project
    ns: LibvirtNamespace
    config: dict[str, Any]
    exclude_args: list[str]
    ssh_key: Path
    known_hosts: dict[str, Path]
    busybox: Path

    def pulumi(self, *args: str, check: bool = True, timeout: float = UP_TIMEOUT_S
               ) -> Any:
        return self.project.pulumi(*args, stack=STACK, check=check, timeout=timeout)

    def up(self, *extra: str) -> float:
        start = time.monotonic()
        self.pulumi("up", "--yes", "--skip-preview", *self.exclude_args, *extra)
        return time.monotonic() - start

    def export(self, *extra: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.pulumi("stack", "export", *extra,
                                                       timeout=300).stdout)
        return state

    def ssh(self, node: str, command: str, *, check: bool = True, timeout: float = 600.0,
            stdin: str | None = None) -> Any:
        return self.ns.run([
            "ssh", "-i", str(self.ssh_key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts[node]}", "-o", "ConnectTimeout=15",
            f"k8sadmin@{NODES[node]}", command], check=check, timeout=timeout, stdin=stdin)

    def copy_to(self, node: str, local: Path, remote: str) -> None:
        data = base64.b64encode(local.read_bytes()).decode()
        self.ssh(node, f"base64 -d | sudo tee {shlex.quote(remote)} >/dev/null", stdin=data)


def state_resources(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = state["deployment"]["resources"]
    return resources


def step_urn_names(state: Mapping[str, Any]) -> dict[str, str]:
    """Command URN -> resource name, for every remote step in the state."""
    return {r["urn"]: r["urn"].rsplit("::", 1)[1] for r in state_resources(state)
            if r["type"] == "command:remote:Command"}


def domain_ids(state: Mapping[str, Any]) -> dict[str, str]:
    return {r["urn"].rsplit("::", 1)[1]: r["id"] for r in state_resources(state)
            if r["type"] == "libvirt:index/domain:Domain"}


@pytest.fixture(scope="module")
def tools() -> NodeTools:
    start = time.monotonic()
    found = discover()
    TIMINGS["Go-built node tools (cache lookup or build)"] = time.monotonic() - start
    return found


@pytest.fixture(scope="module")
def mirror(tools: NodeTools, libvirt_ns: LibvirtNamespace, work: Path
           ) -> Iterator[ReleaseMirror]:
    root = work / "mirror"
    built = build_mirror(root, tools.bins, containerd_version(tools.bins["containerd"]))
    server = libvirt_ns.popen(["python3", "-m", "http.server", "--bind", "0.0.0.0",
                               "--directory", str(root), str(MIRROR_PORT)])
    try:
        yield built
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def lab(project: Project, libvirt_ns: LibvirtNamespace, image: tuple[Path, Path, Path],
        mirror: ReleaseMirror, work: Path) -> Lab:
    config = lab_config(*image, mirror)
    project.init_stack(STACK, config)
    exclude_args = ["--exclude-dependents"]
    for urn in excluded_urns(project):
        exclude_args += ["--exclude", urn]
    busybox = build_busybox_archive(work / "busybox.tar", TEST_IMAGE).path
    return Lab(project, libvirt_ns, config, exclude_args, work / "admin_ed25519", {}, busybox)


def pin_ssh(lab: Lab) -> None:
    """The admin key and each node's host key from the stack (the pins the steps used)."""
    key = lab.pulumi("stack", "output", "adminSshPrivateKey", "--show-secrets",
                     timeout=300).stdout
    lab.ssh_key.write_text(key)
    lab.ssh_key.chmod(0o600)
    state = lab.export("--show-secrets")
    for r in state_resources(state):
        name = r["urn"].rsplit("::", 1)[1]
        if r["type"] == "tls:index/privateKey:PrivateKey" and name.endswith("-host-key"):
            node = name.removesuffix("-host-key")
            path = lab.ssh_key.parent / f"known_hosts-{node}"
            path.write_text(f"{NODES[node]} {r['outputs']['publicKeyOpenssh'].strip()}\n")
            lab.known_hosts[node] = path


def runtimes_of_containerd(lab: Lab, node: str) -> set[str]:
    """Runtime handlers in the CRI config containerd really loaded."""
    dump = lab.ssh(node, "sudo containerd config dump").stdout
    plugins = tomllib.loads(dump)["plugins"]
    cri = plugins.get("io.containerd.cri.v1.runtime") or plugins["io.containerd.grpc.v1.cri"]
    return set(cri["containerd"]["runtimes"])


def step_runs_this_boot(lab: Lab, node: str) -> int:
    """How many remote steps ran on `node` since it booted (pulumi-command's runner executes
    each as `sudo -n bash <temporary file>`, which sudo logs)."""
    log = lab.ssh(node, "sudo journalctl -b --no-pager -o cat _COMM=sudo").stdout
    return len([line for line in log.splitlines() if "COMMAND=/usr/bin/bash /tmp/tmp." in line])


class NodeShell:
    """A node as tests/vm's RemoteCrictl expects a VM: `run(command, stdin, check, timeout)`
    over the test's pinned SSH connection."""

    def __init__(self, lab: Lab, node: str) -> None:
        self.lab, self.node = lab, node

    def run(self, cmd: str, *, stdin: bytes | None = None, check: bool = True,
            timeout: float = 300.0) -> RunResult:
        proc = self.lab.ssh(self.node, cmd, check=False, timeout=timeout,
                            stdin=stdin.decode() if stdin is not None else None)
        result = RunResult(proc.returncode, proc.stdout, proc.stderr)
        if check and result.rc != 0:
            raise CommandFailed(cmd, result)
        return result


def cri_on(lab: Lab, node: str, crictl: Path, work: Path) -> RemoteCrictl:
    """crictl copied to `node`, the busybox image and a stand-in pause image imported (what
    tests/vm does; a pod goes through the CRI as the kubelet's would)."""
    lab.ssh(node, f"sudo mkdir -p {shlex.quote(str(Path(CRICTL).parent))}")
    lab.copy_to(node, crictl, CRICTL)
    lab.ssh(node, f"sudo chmod 0755 {CRICTL}")
    pause_ref = sandbox_image(lab.ssh(node, "sudo cat /etc/containerd/config.toml").stdout)
    archives = [lab.busybox, build_busybox_archive(work / "pause.tar", pause_ref,
                                                   entrypoint=pause_entrypoint()).path]
    remote = RemoteCrictl(NodeShell(lab, node))  # type: ignore[arg-type]
    remote.wait_runtime_ready()
    for archive in archives:
        target = f"/var/tmp/{archive.name}"
        lab.copy_to(node, archive, target)
        lab.ssh(node, f"sudo ctr -n k8s.io images import --snapshotter overlayfs {target}")
    remote.wait_image(TEST_IMAGE)
    remote.wait_image(pause_ref)
    return remote


def gvisor_pod_dmesg(cri: RemoteCrictl) -> str:
    """Kernel log seen by a container of a pod with the runsc handler."""
    with cri.container("runsc", f"e2e-gvisor-{time.time_ns()}") as cid:
        result = cri.exec(cid, "/bin/dmesg")
    assert result.rc == 0, result.stdout + result.stderr
    return result.stdout


# ---------------------------------------------------------------------------------------------


def test_up_through_the_node_layer(lab: Lab) -> None:
    seconds = lab.up()
    TIMINGS["pulumi up (network, volumes, cloud-init disks, domains, node steps)"] = seconds
    state = lab.export()
    steps = set(step_urn_names(state).values())
    expected = {f"{n}-{s}" for n, suffixes in NODE_STEPS.items() for s in suffixes}
    assert steps == expected
    inventory = lab.ns.inventory()
    assert inventory["domains"] == sorted(f"{STACK}-{n}" for n in NODES)
    assert inventory["networks"] == [f"{STACK}-lab"]
    assert len(inventory["volumes"]) == 1 + 2 * len(NODES)  # base image, root + seed per node
    pin_ssh(lab)
    for node, suffixes in NODE_STEPS.items():
        assert step_runs_this_boot(lab, node) == len(suffixes), node


def test_nodes_answer_with_their_pinned_host_keys(lab: Lab) -> None:
    for node in NODES:
        assert lab.ssh(node, "hostname").stdout.strip() == node
    # A host key other than the pinned one is refused (the test's ssh as the steps' provider).
    wrong = lab.known_hosts["master"].read_text().replace(NODES["master"], NODES[WORKER])
    lab.known_hosts[WORKER].write_text(wrong)
    try:
        refused = lab.ssh(WORKER, "true", check=False)
        assert refused.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in refused.stderr
    finally:
        pin_ssh(lab)


def test_containerd_knows_runc_and_runsc(lab: Lab) -> None:
    assert {"runc", "runsc"} <= runtimes_of_containerd(lab, WORKER)
    assert "runc" in runtimes_of_containerd(lab, "master")


@pytest.fixture(scope="module")
def cri(lab: Lab, tools: NodeTools, work: Path) -> RemoteCrictl:
    start = time.monotonic()
    remote = cri_on(lab, WORKER, tools.crictl, work)
    TIMINGS["crictl and images into the worker"] = time.monotonic() - start
    return remote


def test_a_gvisor_container_runs_on_the_worker(cri: RemoteCrictl) -> None:
    dmesg = gvisor_pod_dmesg(cri)
    assert "Starting gVisor" in dmesg, dmesg


def test_second_up_changes_nothing(lab: Lab) -> None:
    seconds = lab.up("--expect-no-changes")
    TIMINGS["pulumi up --expect-no-changes"] = seconds


def test_memory_change_replaces_the_worker_and_runs_its_steps_again(lab: Lab,
                                                                      cri: RemoteCrictl) -> None:
    before = lab.export()
    old_domains = domain_ids(before)
    old_boot = lab.ssh(WORKER, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    stack_file = lab.project.root / "stacks" / f"Pulumi.{STACK}.yaml"
    document = yaml.safe_load(stack_file.read_text())
    document["config"][p("pools")][1]["memoryMiB"] = CHANGED_MEMORY_MIB
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))

    steps = lab.project.preview_steps(STACK, *lab.exclude_args)
    ops: dict[str, set[str]] = {}
    for step in steps:
        ops.setdefault(step["urn"].rsplit("::", 1)[1], set()).add(step["op"])
    replaced = {"replace", "create-replacement", "delete-replaced"}
    assert ops[WORKER] & replaced, ops[WORKER]
    for suffix in NODE_STEPS[WORKER]:
        assert ops[f"{WORKER}-{suffix}"] & replaced, (suffix, ops[f"{WORKER}-{suffix}"])
    for name, kinds in ops.items():
        if name == "master" or name.startswith("master-"):
            assert kinds == {"same"}, (name, kinds)

    seconds = lab.up()
    TIMINGS["pulumi up after the memory change (worker replaced, its steps again)"] = seconds
    after = lab.export()
    assert domain_ids(after)[WORKER] != old_domains[WORKER]
    assert domain_ids(after)["master"] == old_domains["master"]
    memory = lab.ns.virsh("dominfo", f"{STACK}-{WORKER}")
    assert f"{CHANGED_MEMORY_MIB * 1024} KiB" in memory, memory
    # A new machine (on the same root volume) where every step ran again: each step is one
    # `sudo bash <script>` the journal of this boot records; containerd has both handlers and
    # gVisor works.
    assert lab.ssh(WORKER, "cat /proc/sys/kernel/random/boot_id").stdout.strip() != old_boot
    assert step_runs_this_boot(lab, WORKER) == len(NODE_STEPS[WORKER])
    assert {"runc", "runsc"} <= runtimes_of_containerd(lab, WORKER)
    assert "Starting gVisor" in gvisor_pod_dmesg(cri)  # crictl and images are on the disk
    lab.up("--expect-no-changes")


def revealed(value: Any) -> Any:
    """A value of `stack export --show-secrets`: secrets are objects holding their JSON."""
    if isinstance(value, dict) and "plaintext" in value:
        return json.loads(value["plaintext"])
    return value


def secret_strings(state: Mapping[str, Any]) -> list[str]:
    """The generated secrets as `--show-secrets` reveals them: private keys, token parts,
    the key material of the encryption at rest."""
    found: list[str] = []
    for r in state_resources(state):
        outputs = {k: revealed(v) for k, v in (r.get("outputs") or {}).items()}
        if r["type"] == "tls:index/privateKey:PrivateKey":
            found += [outputs["privateKeyPem"], outputs["privateKeyOpenssh"]]
        elif r["type"] == "random:index/randomPassword:RandomPassword":
            found.append(outputs["result"])
    return [s.strip() for s in found if isinstance(s, str) and s.strip()]


def test_stack_export_holds_no_plaintext_secret(lab: Lab) -> None:
    revealed = secret_strings(lab.export("--show-secrets"))
    assert len(revealed) >= 10
    text = json.dumps(lab.export())
    assert "PRIVATE KEY-----" not in text
    leaked = [s[:12] + "..." for s in revealed if s in text]
    assert not leaked


def test_destroy_leaves_nothing_in_libvirt(lab: Lab) -> None:
    start = time.monotonic()
    lab.pulumi("destroy", "--yes", "--skip-preview")
    TIMINGS["pulumi destroy"] = time.monotonic() - start
    assert lab.ns.inventory() == {"domains": [], "volumes": [], "networks": []}
