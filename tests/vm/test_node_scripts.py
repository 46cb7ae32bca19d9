"""The node scripts on a real Debian 12 VM provisioned by our rendered cloud-init.

The program itself (``__main__.py`` under Pulumi mocks, tests/graph/harness.py) renders the
remote steps of a gVisor worker, with the stack config's download base URLs, versions and
checksums pointed at a local release mirror (tests/vm/releases.py) holding the Go-built
containerd 2.x and gVisor and Debian's runc and CNI plugins. Each step's recorded ``create``
command and ``stdin`` are run over the pinned SSH connection, exactly what pulumi-command
would send, in the order of the program's dependencies:

    wait-cloud-init -> preflight -> (node-firewall | install-containerd | install-gvisor)
        -> configure-containerd

containerd is started once, by the config step, with the node's config. Then a pod runs under
runsc (and one under runc) through the CRI inside the VM, every step is run again and nothing
may change (files, binaries, containerd's process). Finally one changed runsc flag must make
configure-containerd rewrite runsc.toml without restarting containerd, and the next runsc pod
must run with it; a hand-edited containerd config is put back with exactly one restart; a
replaced runsc is installed again from the pinned release. The static pod firewall drops a
pod-like namespace's connection to the node's sshd but not to another pod, and a runsc pod's
sandbox sits in the pod's systemd slice under its memory limit.

All tests share the session VM (tests/vm/conftest.py) and run in file order.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shlex
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from .conftest import NOTES, TIMINGS, NodeFixture
from .harness import REPO_ROOT, BootedVM
from .releases import RecordingServer, ReleaseMirror, build_mirror, serve
from .ssh import RunResult

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import components.node
from components.render.containerd import render_containerd_config, render_runsc_toml
from components.render.firewall import RULESET_PATH, UNIT
from components.render.scripts import REMOTE_RUNNER
from tests.graph.harness import Graph, run_program, stack_config
from tests.node.conftest import node_tools  # noqa: F401  (tests/node's session fixture)
from tests.node.cri import NETWORK_NODE
from tests.node.nodes import TEST_IMAGE
from tests.node.oci import build_busybox_archive, pause_entrypoint
from tests.node.tools import NodeTools, containerd_version

pytestmark = [pytest.mark.slow, pytest.mark.vm]

STACK = "dev"  # stacks/Pulumi.dev.yaml: worker1 is its gVisor worker
NODE = "worker1"
PROJECT_KEY = "sandboxed-k8s:"
# The steps of NodeRuntime this test runs (kubernetes-tools needs kubeadm: not here).
STEP_SUFFIXES = ("wait-cloud-init", "preflight", "pod-firewall", "containerd", "gvisor",
                 "containerd-config")
SCRIPT_OF = {
    "wait-cloud-init": "wait-cloud-init.sh",
    "preflight": "preflight.sh",
    "pod-firewall": "node-firewall.sh",
    "containerd": "install-containerd.sh",
    "gvisor": "install-gvisor.sh",
    "containerd-config": "configure-containerd.sh",
}
# The test image's disk is 4 GB; the program's 5 GiB minimum is for real nodes.
TEST_MIN_FREE_GIB = 1
HANDLERS = ("runc", "runsc")
# An allowlisted runsc flag that widens nothing and leaves a visible trace (log files).
CHANGED_FLAGS = {"debug-log": "/var/log/sk8s-test-runsc/"}

CONFIG_TOML = "/etc/containerd/config.toml"
FIREWALL_UNIT_PATH = f"/etc/systemd/system/{UNIT}"
RUNSC_TOML = "/etc/containerd/runsc.toml"
STATE_DIR = "/var/lib/sandboxed-k8s"
CONTAINERD_SOCK = "unix:///run/containerd/containerd.sock"
TEST_DIR = "/opt/sk8s-test"  # test-only files in the VM, away from what the scripts install
CRICTL = f"{TEST_DIR}/bin/crictl"
CRICTL_CONFIG = f"{TEST_DIR}/crictl.yaml"
REMOTE_IMAGES = f"{TEST_DIR}/images"

STEP_TIMEOUT_S = 1200.0
POD_TIMEOUT_S = 600.0
CRI_READY_TIMEOUT_S = 300.0
# systemd's "unit started" journal message (SD_MESSAGE_UNIT_STARTED).
UNIT_STARTED_MESSAGE_ID = "39f53479d3a045ac8e11786248231fbf"


# ---------------------------------------------------------------------------------------------
# The program's steps
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramStep:
    suffix: str
    create: str
    stdin: str

    @property
    def script(self) -> str:
        return SCRIPT_OF[self.suffix]

    def exported(self) -> dict[str, str]:
        """The parameters at the top of stdin (``export NAME=value``), values still quoted."""
        out: dict[str, str] = {}
        for line in self.stdin.splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                out[name] = value
        return out


@dataclass(frozen=True)
class ProgramPlan:
    steps: dict[str, ProgramStep]
    order: list[str]  # a topological order of the steps by the program's dependencies
    depends: dict[str, set[str]]  # step -> the other steps it transitively waits for


def mirror_config(mirror: ReleaseMirror, server: RecordingServer,
                  runsc_flags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """stacks/Pulumi.dev.yaml with every node download pointed at the local mirror."""
    config = dict(stack_config(STACK))
    config[PROJECT_KEY + "containerd"] = {
        "version": mirror.containerd.version, "sha256": mirror.containerd.sha256,
        "baseUrl": server.guest_url("containerd")}
    config[PROJECT_KEY + "runc"] = {
        "version": mirror.runc.version, "sha256": mirror.runc.sha256,
        "baseUrl": server.guest_url("runc")}
    config[PROJECT_KEY + "cniPlugins"] = {
        "version": mirror.cni_plugins.version, "sha256": mirror.cni_plugins.sha256,
        "baseUrl": server.guest_url("cni-plugins")}
    gvisor = dict(config.get(PROJECT_KEY + "gvisor") or {})
    gvisor.update({
        "release": mirror.gvisor_release, "layout": "binaries",
        "runscSha512": mirror.gvisor_sha512["runsc"],
        "shimSha512": mirror.gvisor_sha512["containerd-shim-runsc-v1"],
        "baseUrl": server.guest_url("gvisor"), "platform": "systrap",
        "flags": dict(runsc_flags or {}),
    })
    config[PROJECT_KEY + "gvisor"] = gvisor
    return config


def program_plan(config: Mapping[str, Any]) -> ProgramPlan:
    """Run the program under mocks; the worker's remote steps as pulumi-command gets them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(components.node, "MIN_FREE_GIB", TEST_MIN_FREE_GIB)
        graph: Graph = run_program(config, STACK)
    regs = {s: graph.named(f"{NODE}-{s}", "command:remote:Command") for s in STEP_SUFFIXES}
    steps = {s: ProgramStep(s, str(r.inputs["create"]), str(r.inputs["stdin"]))
             for s, r in regs.items()}
    depends = {a: {b for b in STEP_SUFFIXES if b != a and graph.depends_on(regs[a], regs[b])}
               for a in STEP_SUFFIXES}
    order: list[str] = []
    while len(order) < len(STEP_SUFFIXES):
        ready = [s for s in STEP_SUFFIXES if s not in order and depends[s] <= set(order)]
        if not ready:
            raise AssertionError(f"the program's steps have a dependency cycle: {depends}")
        order.append(ready[0])
    return ProgramPlan(steps, order, depends)


# ---------------------------------------------------------------------------------------------
# Running things in the VM
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRun:
    suffix: str
    result: RunResult
    seconds: float

    @property
    def log(self) -> str:
        return self.result.stdout + self.result.stderr


def run_step(vm: BootedVM, step: ProgramStep) -> StepRun:
    start = time.monotonic()
    result = vm.run(step.create, stdin=step.stdin.encode(), check=False, timeout=STEP_TIMEOUT_S)
    return StepRun(step.suffix, result, time.monotonic() - start)


def run_plan(vm: BootedVM, plan: ProgramPlan, label: str) -> dict[str, StepRun]:
    runs: dict[str, StepRun] = {}
    for suffix in plan.order:
        run = run_step(vm, plan.steps[suffix])
        runs[suffix] = run
        TIMINGS[f"{label}: {plan.steps[suffix].script}"] = run.seconds
        assert run.result.rc == 0, (
            f"{label}: {plan.steps[suffix].script} failed (rc={run.result.rc}):\n{run.log}"
        )
    return runs


def sudo(vm: BootedVM, script: str, *, stdin: bytes | None = None, check: bool = True,
         timeout: float = 300.0) -> RunResult:
    return vm.run(f"sudo -n bash -c {shlex.quote(script)}", stdin=stdin, check=check,
                  timeout=timeout)


def containerd_unit(vm: BootedVM) -> dict[str, str]:
    out = vm.run("systemctl show containerd -p MainPID -p ActiveEnterTimestampMonotonic "
                 "-p InvocationID -p ActiveState -p NRestarts").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def containerd_starts(vm: BootedVM) -> list[str]:
    """The invocation IDs of every start of containerd.service systemd logged, oldest first.

    (Compared by list rather than with a journal cursor: on this guest ``--after-cursor``
    combined with field matches returned no entries at all.)
    """
    out = sudo(vm, f"journalctl -u containerd.service MESSAGE_ID={UNIT_STARTED_MESSAGE_ID} "
                   "-o json --no-pager").stdout
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [str(e.get("INVOCATION_ID", "")) for e in entries]


def installed_files(mirror: ReleaseMirror) -> list[str]:
    return [CONFIG_TOML, RUNSC_TOML, "/etc/systemd/system/containerd.service", RULESET_PATH,
            FIREWALL_UNIT_PATH, *sorted(mirror.expected_installs)]


def file_state(vm: BootedVM, paths: list[str]) -> dict[str, tuple[str, str]]:
    """path -> (sha256, "inode mtime"): a rewrite with equal bytes still changes the inode."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    digests = sudo(vm, f"sha256sum {quoted}").stdout
    stats = sudo(vm, f"stat -c '%n %i %.9Y' {quoted}").stdout
    sums = {line.split(maxsplit=1)[1].strip(): line.split()[0] for line in digests.splitlines()}
    meta = {fields[0]: f"{fields[1]} {fields[2]}"
            for fields in (line.split() for line in stats.splitlines())}
    return {p: (sums[p], meta[p]) for p in paths}


def stamps(vm: BootedVM) -> dict[str, str]:
    """Stamp file -> sha256 of its content (the pins and the installed files' digests)."""
    out = sudo(vm, f"sha256sum {STATE_DIR}/*").stdout
    return {path: digest for digest, path in (line.split(maxsplit=1) for line in out.splitlines())}


@dataclass(frozen=True)
class NodeState:
    files: dict[str, tuple[str, str]]
    stamps: dict[str, str]
    unit: dict[str, str]


def node_state(vm: BootedVM, mirror: ReleaseMirror) -> NodeState:
    return NodeState(file_state(vm, installed_files(mirror)), stamps(vm), containerd_unit(vm))


# --- CRI through crictl inside the VM --------------------------------------------------------


class RemoteCrictl:
    """crictl (copied into the VM) against the node's containerd, run as root over SSH."""

    def __init__(self, vm: BootedVM) -> None:
        self.vm = vm
        sudo(vm, f"mkdir -p {TEST_DIR} && cat > {CRICTL_CONFIG}", stdin=(
            f"runtime-endpoint: {CONTAINERD_SOCK}\nimage-endpoint: {CONTAINERD_SOCK}\n"
            f"timeout: {int(POD_TIMEOUT_S)}\n").encode())
        self.base = f"{CRICTL} --config {CRICTL_CONFIG}"

    def run(self, args: str, *, check: bool = True, timeout: float = POD_TIMEOUT_S
            ) -> RunResult:
        return sudo(self.vm, f"{self.base} {args}", check=check, timeout=timeout)

    def put_json(self, path: str, document: Mapping[str, Any]) -> None:
        sudo(self.vm, f"mkdir -p $(dirname {path}) && cat > {path}",
             stdin=json.dumps(document).encode())

    def wait_runtime_ready(self, timeout: float = CRI_READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            result = self.run("info --output json", check=False, timeout=120)
            if result.rc == 0:
                conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
                if any(c.get("type") == "RuntimeReady" and c.get("status") for c in conditions):
                    return
            last = result.stdout + result.stderr
            time.sleep(3)
        raise AssertionError(f"CRI not RuntimeReady within {timeout:.0f}s:\n{last}")

    def wait_image(self, ref: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.run(f"inspecti {shlex.quote(ref)}", check=False, timeout=120).rc != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"image {ref} not visible through the CRI in {timeout}s")
            time.sleep(2)

    @contextlib.contextmanager
    def container(self, handler: str, name: str) -> Iterator[str]:
        """A host-network pod with `handler` holding one sleeping busybox container."""
        with self.pod(handler, name) as (_, cid):
            yield cid

    @contextlib.contextmanager
    def pod(self, handler: str, name: str, slice_name: str | None = None
            ) -> Iterator[tuple[str, str]]:
        """(pod id, container id) of such a pod, its cgroup parent `slice_name` if given."""
        uid = uuid.uuid4().hex[:12]
        pod_path, ctr_path = f"{TEST_DIR}/cri/{uid}-pod.json", f"{TEST_DIR}/cri/{uid}-main.json"
        logs = f"/var/log/sk8s-test-pods/{name}-{uid}"
        self.put_json(pod_path, {
            "metadata": {"name": name, "namespace": "default", "uid": uid, "attempt": 0},
            "log_directory": logs,
            "linux": {
                # What the kubelet does with the systemd cgroup driver (the rendered config
                # sets SystemdCgroup = true for runc): a slice as the pod's cgroup parent.
                "cgroup_parent": slice_name or f"sk8stest{uid}.slice",
                "security_context": {"namespace_options": {"network": NETWORK_NODE}},
            },
        })
        self.put_json(ctr_path, {
            "metadata": {"name": "main", "attempt": 0}, "image": {"image": TEST_IMAGE},
            "command": ["/bin/sleep", "3600"], "log_path": "main.log", "linux": {},
        })
        sudo(self.vm, f"mkdir -p {logs}")
        pod_id = self.run(f"runp --runtime {handler} {pod_path}").stdout.strip()
        try:
            cid = self.run(f"create --no-pull {pod_id} {ctr_path} {pod_path}").stdout.strip()
            self.run(f"start {cid}")
            yield pod_id, cid
        finally:
            self.run(f"stopp {pod_id}", check=False)
            self.run(f"rmp --force {pod_id}", check=False)

    def exec(self, cid: str, argv: str) -> RunResult:
        return self.run(f"exec {cid} {argv}", check=False, timeout=300)


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    mirror: ReleaseMirror
    server: RecordingServer


@dataclass(frozen=True)
class FirstRun:
    runs: dict[str, StepRun]
    requests: list[tuple[str, int]]


def sandbox_image(config_text: str) -> str:
    """The pod sandbox ("pause") image a rendered config.toml names (version 2 or 3)."""
    plugins = tomllib.loads(config_text)["plugins"]
    if "io.containerd.cri.v1.images" in plugins:
        return str(plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"])
    return str(plugins["io.containerd.grpc.v1.cri"]["sandbox_image"])


def decoded_param(step: ProgramStep, name: str) -> str:
    """A base64 file parameter of a step, as the node script decodes it."""
    (value,) = shlex.split(step.exported()[name])
    return base64.b64decode(value).decode()


@pytest.fixture(scope="module")
def tools(request: pytest.FixtureRequest) -> NodeTools:
    """tests/node's `node_tools` (Go-built containerd 2.x, gVisor, crictl; Debian runc)."""
    value = request.getfixturevalue("node_tools")
    assert isinstance(value, NodeTools)
    return value


@pytest.fixture(scope="module")
def served(tools: NodeTools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    start = time.monotonic()
    root = tmp_path_factory.mktemp("release-mirror")
    mirror = build_mirror(root, tools.bins, containerd_version(tools.bins["containerd"]))
    TIMINGS["release mirror build"] = time.monotonic() - start
    NOTES.append(
        f"release mirror: containerd {mirror.containerd.version} (Go-built), runc "
        f"{mirror.runc.version} and CNI plugins {mirror.cni_plugins.version} (Debian), "
        f"gVisor {mirror.gvisor_release} (Go-built, unpatched)"
    )
    with serve(root) as server:
        yield Served(mirror, server)


@pytest.fixture(scope="module")
def plan(served: Served) -> ProgramPlan:
    return program_plan(mirror_config(served.mirror, served.server))


@pytest.fixture(scope="module")
def first_run(node_vm: NodeFixture, plan: ProgramPlan, served: Served) -> FirstRun:
    mark = served.server.mark()
    runs = run_plan(node_vm.vm, plan, "1st run")
    return FirstRun(runs, served.server.requests_since(mark))


@pytest.fixture(scope="module")
def cri(node_vm: NodeFixture, tools: NodeTools, first_run: FirstRun,
        tmp_path_factory: pytest.TempPathFactory) -> RemoteCrictl:
    """crictl in the VM, the busybox image and the stand-in pause image imported."""
    vm = node_vm.vm
    start = time.monotonic()
    vm.copy(tools.crictl, CRICTL, mode=0o755, sudo=True)
    config_text = sudo(vm, f"cat {CONFIG_TOML}").stdout
    pause_ref = sandbox_image(config_text)
    images = tmp_path_factory.mktemp("vm-images")
    archives = [
        build_busybox_archive(images / "busybox.tar", TEST_IMAGE).path,
        build_busybox_archive(images / "pause.tar", pause_ref, entrypoint=pause_entrypoint()).path,
    ]
    remote = RemoteCrictl(vm)
    remote.wait_runtime_ready()
    for archive in archives:
        target = f"{REMOTE_IMAGES}/{archive.name}"
        vm.copy(archive, target, sudo=True)
        sudo(vm, f"/usr/local/bin/ctr -n k8s.io images import --snapshotter overlayfs {target}")
    remote.wait_image(TEST_IMAGE)
    remote.wait_image(pause_ref)
    TIMINGS["crictl + image import into the VM"] = time.monotonic() - start
    return remote


# ---------------------------------------------------------------------------------------------
# Tests, in the order they run
# ---------------------------------------------------------------------------------------------


def test_program_steps_run_in_graph_order_against_the_mirror(plan: ProgramPlan,
                                                              served: Served) -> None:
    deps = plan.depends
    assert deps["wait-cloud-init"] == set()
    assert deps["preflight"] == {"wait-cloud-init"}
    for parallel in ("pod-firewall", "containerd", "gvisor"):
        assert deps[parallel] == {"wait-cloud-init", "preflight"}, deps
    assert deps["containerd-config"] == {"wait-cloud-init", "preflight", "pod-firewall",
                                         "containerd", "gvisor"}
    assert plan.order[:2] == ["wait-cloud-init", "preflight"]
    assert plan.order[-1] == "containerd-config"
    for step in plan.steps.values():
        assert step.create == REMOTE_RUNNER, step.suffix
        assert f"SCRIPT_NAME={step.script.removesuffix('.sh')}" in step.stdin
    # The downloads point at the mirror, with the versions and checksums of what it serves.
    m, server = served.mirror, served.server
    installer = plan.steps["containerd"].exported()
    assert shlex.split(installer["CONTAINERD_BASE_URL"]) == [server.guest_url("containerd")]
    assert shlex.split(installer["CONTAINERD_SHA256"]) == [m.containerd.sha256]
    assert shlex.split(installer["RUNC_SHA256"]) == [m.runc.sha256]
    assert shlex.split(installer["CNI_PLUGINS_SHA256"]) == [m.cni_plugins.sha256]
    gvisor = plan.steps["gvisor"].exported()
    assert shlex.split(gvisor["GVISOR_BASE_URL"]) == [server.guest_url("gvisor")]
    assert shlex.split(gvisor["RUNSC_SHA512"]) == [m.gvisor_sha512["runsc"]]
    assert shlex.split(plan.steps["preflight"].exported()["REQUIRE_GVISOR"]) == ["1"]
    handlers = plan.steps["containerd-config"].exported()["HANDLERS"]
    assert shlex.split(handlers) == [" ".join(HANDLERS)]


def test_first_run_installs_and_configures_the_runtimes(
    node_vm: NodeFixture, plan: ProgramPlan, served: Served, first_run: FirstRun
) -> None:
    vm, m = node_vm.vm, served.mirror
    logs = {s: r.log for s, r in first_run.runs.items()}
    assert "all requirements met" in logs["preflight"], logs["preflight"]
    assert f"pod firewall loaded from {RULESET_PATH}" in logs["pod-firewall"], logs
    assert f"enabled {UNIT}" in logs["pod-firewall"], logs["pod-firewall"]
    # containerd never ran with its built-in defaults: only the config step started it.
    assert "restarted containerd" not in logs["containerd"], logs["containerd"]
    assert "started once its config is installed" in logs["containerd"], logs["containerd"]
    assert f"gVisor {m.gvisor_release} installed (binaries)" in logs["gvisor"], logs["gvisor"]
    config_log = logs["containerd-config"]
    assert "reads config version 3" in config_log, config_log
    assert f"updated {CONFIG_TOML}" in config_log and f"updated {RUNSC_TOML}" in config_log
    assert config_log.count("restarted containerd") == 1, config_log
    assert "handlers configured: runc runsc" in config_log, config_log
    assert len(containerd_starts(vm)) == 1

    # Every artifact was downloaded once from the mirror, and nothing else was asked for.
    expected = sorted([m.url_path("containerd"), m.url_path("runc"), m.url_path("cni-plugins"),
                       *(m.url_path(f"{b}{ext}") for b in ("runsc", "containerd-shim-runsc-v1")
                         for ext in ("", ".sha512"))])
    assert sorted(first_run.requests) == [(path, 200) for path in expected]

    # The node holds exactly the mirror's binaries and the program's rendered configs.
    state = file_state(vm, installed_files(m))
    for path, digest in m.expected_installs.items():
        assert state[path][0] == digest, path
    config_step = plan.steps["containerd-config"]
    node_config = sudo(vm, f"cat {CONFIG_TOML}").stdout
    assert node_config == decoded_param(config_step, "CONTAINERD_CONFIG_V3_B64")
    assert node_config == render_containerd_config(3, HANDLERS)
    node_runsc = sudo(vm, f"cat {RUNSC_TOML}").stdout
    assert node_runsc == decoded_param(config_step, "RUNSC_TOML_B64")
    assert node_runsc == render_runsc_toml("systrap", {})
    unit = containerd_unit(vm)
    assert unit["ActiveState"] == "active", unit
    assert vm.run("systemctl is-enabled containerd").stdout.strip() == "enabled"


def _probe(cri: RemoteCrictl, handler: str, label: str = "") -> tuple[RunResult, RunResult]:
    """uname -r and dmesg inside a fresh pod with `handler` (pod removed afterwards)."""
    start = time.monotonic()
    with cri.container(handler, f"{handler}-probe") as cid:
        uname = cri.exec(cid, "uname -r")
        dmesg = cri.exec(cid, "dmesg")
    TIMINGS[f"{label or handler + ' pod'}: run, exec uname+dmesg, remove"] = (
        time.monotonic() - start)
    return uname, dmesg


def test_runsc_pod_runs_inside_gvisor(node_vm: NodeFixture, cri: RemoteCrictl) -> None:
    vm_kernel = node_vm.vm.run("uname -r").stdout.strip()
    uname, dmesg = _probe(cri, "runsc")
    assert uname.rc == 0, uname
    assert dmesg.rc == 0, dmesg
    assert "gVisor" in dmesg.stdout, f"dmesg in a runsc pod does not mention gVisor:\n{dmesg}"
    assert uname.stdout.strip() and uname.stdout.strip() != vm_kernel, (uname, vm_kernel)


def test_runc_pod_sees_the_vm_kernel(node_vm: NodeFixture, cri: RemoteCrictl) -> None:
    vm_kernel = node_vm.vm.run("uname -r").stdout.strip()
    uname, dmesg = _probe(cri, "runc")
    assert uname.rc == 0, uname
    assert uname.stdout.strip() == vm_kernel
    assert "gVisor" not in dmesg.stdout


POD_MEMORY_MAX = 192 * 1024 * 1024


def _cgroup_of(vm: BootedVM, pid: str) -> str:
    return sudo(vm, f"cat /proc/{pid}/cgroup").stdout.strip().partition("::")[2]


def _effective_memory_max(vm: BootedVM, cgroup: str) -> int:
    """The lowest memory.max from the cgroup up to the root ('max' is unlimited)."""
    limits = sudo(vm, "p=/sys/fs/cgroup" + shlex.quote(cgroup) + "; while :; do "
                      "cat \"$p/memory.max\" 2>/dev/null || true; "
                      "[ \"$p\" = /sys/fs/cgroup ] && break; p=$(dirname \"$p\"); done").stdout
    return min((int(v) for v in limits.split() if v != "max"), default=2**63)


def test_runsc_sandbox_runs_in_the_pods_cgroup_under_its_memory_limit(
        node_vm: NodeFixture, cri: RemoteCrictl) -> None:
    """As the kubelet does with the systemd driver: the pod's slice carries its limit, and
    the sandbox (Sentry, gofer and their children) must sit below it."""
    vm = node_vm.vm
    slice_name = f"sk8spod{uuid.uuid4().hex[:12]}.slice"
    sudo(vm, f"mkdir -p /run/systemd/system && printf '[Slice]\\nMemoryMax={POD_MEMORY_MAX}\\n' "
             f"> /run/systemd/system/{slice_name} && systemctl daemon-reload && "
             f"systemctl start {slice_name}")
    start = time.monotonic()
    try:
        with cri.pod("runsc", "cgroup-probe", slice_name) as (pod_id, _):
            listed = sudo(vm, "ps -e -o pid=,ppid=,args=").stdout.splitlines()
            rows = [line.split(None, 2) for line in listed if len(line.split(None, 2)) == 3]
            args = {pid: argv for pid, _, argv in rows}
            (shim,) = [pid for pid, _, argv in rows
                       if argv.split()[0].endswith("containerd-shim-runsc-v1") and pod_id in argv]
            # The shim's descendants but the runsc CLI it runs itself (wait, events): the
            # Sentry, the gofer and systrap's stub processes.
            sandbox: set[str] = set()
            parents = {shim}
            while parents:
                parents = {pid for pid, ppid, argv in rows if ppid in parents
                           and argv.split()[0].rsplit("/", 1)[-1] != "runsc"} - sandbox
                sandbox |= parents
            sentries = [pid for pid in sandbox if args[pid].startswith("runsc-sandbox")]
            assert sentries, [args[pid] for pid in sandbox]
            assert all("--systemd-cgroup=true" in args[pid] for pid in sentries), (
                [args[pid] for pid in sentries])
            placed = {pid: _cgroup_of(vm, pid) for pid in sandbox}
            outside = {pid: cg for pid, cg in placed.items()
                       if not cg.startswith(f"/{slice_name}/")}
            assert not outside, (outside, [args[pid] for pid in outside])
            for pid, cgroup in placed.items():
                assert _effective_memory_max(vm, cgroup) == POD_MEMORY_MAX, (pid, cgroup)
    finally:
        sudo(vm, f"systemctl stop {slice_name}; rm -f /run/systemd/system/{slice_name}; "
                 "systemctl daemon-reload", check=False)
    TIMINGS["runsc pod in its slice: run, inspect, remove"] = time.monotonic() - start


def test_second_run_changes_nothing(
    node_vm: NodeFixture, plan: ProgramPlan, served: Served, first_run: FirstRun
) -> None:
    vm, m = node_vm.vm, served.mirror
    before = node_state(vm, m)
    starts = containerd_starts(vm)
    mark = served.server.mark()

    runs = run_plan(vm, plan, "2nd run")

    after = node_state(vm, m)
    assert after.files == before.files  # same bytes, same inodes and mtimes: nothing rewritten
    assert after.stamps == before.stamps
    for key in ("MainPID", "ActiveEnterTimestampMonotonic", "InvocationID", "ActiveState"):
        assert after.unit[key] == before.unit[key], (key, before.unit, after.unit)
    assert containerd_starts(vm) == starts
    assert served.server.requests_since(mark) == []  # nothing downloaded again

    logs = {s: r.log for s, r in runs.items()}
    install = logs["containerd"]
    assert f"containerd {m.containerd.version} already installed" in install, install
    assert f"runc {m.runc.version} already installed" in install, install
    assert f"CNI plugins {m.cni_plugins.version} already installed" in install, install
    assert "containerd unchanged, not restarted" in install, install
    assert f"gVisor {m.gvisor_release} already installed" in logs["gvisor"], logs["gvisor"]
    assert f"enabled {UNIT}" not in logs["pod-firewall"], logs["pod-firewall"]
    config_log = logs["containerd-config"]
    assert "configuration unchanged, containerd not restarted" in config_log, config_log
    assert "handlers configured: runc runsc" in config_log, config_log
    for suffix, log in logs.items():
        assert "updated " not in log and "restarted containerd" not in log, (suffix, log)


def test_changed_runsc_flag_reaches_new_pods_without_a_restart(
    node_vm: NodeFixture, plan: ProgramPlan, served: Served, cri: RemoteCrictl
) -> None:
    vm, m = node_vm.vm, served.mirror
    changed = program_plan(mirror_config(m, served.server, CHANGED_FLAGS))
    # One changed stack value re-runs only the containerd config step.
    differing = [s for s in STEP_SUFFIXES if changed.steps[s].stdin != plan.steps[s].stdin]
    assert differing == ["containerd-config"]

    before = node_state(vm, m)
    starts = containerd_starts(vm)
    run = run_step(vm, changed.steps["containerd-config"])
    TIMINGS["changed flag: configure-containerd.sh"] = run.seconds
    assert run.result.rc == 0, run.log
    after = node_state(vm, m)

    assert after.files != before.files  # the no-change check above can fail
    assert after.files[RUNSC_TOML][0] != before.files[RUNSC_TOML][0]
    untouched = [p for p in before.files if p != RUNSC_TOML]
    assert {p: after.files[p] for p in untouched} == {p: before.files[p] for p in untouched}
    node_runsc = sudo(vm, f"cat {RUNSC_TOML}").stdout
    assert node_runsc == render_runsc_toml("systrap", CHANGED_FLAGS)
    assert f"updated {RUNSC_TOML}" in run.log and f"updated {CONFIG_TOML}" not in run.log
    assert "restarted containerd" not in run.log, run.log
    assert containerd_starts(vm) == starts
    assert after.unit == before.unit

    # The same changed parameters again: nothing more to do.
    again = run_step(vm, changed.steps["containerd-config"])
    assert again.result.rc == 0, again.log
    assert "configuration unchanged, containerd not restarted" in again.log, again.log
    assert node_state(vm, m) == after

    # The new flag reaches runsc: a new runsc pod writes its debug logs where the flag says.
    log_dir = CHANGED_FLAGS["debug-log"]
    sudo(vm, f"rm -rf {log_dir} && mkdir -p {log_dir}")
    _, dmesg = _probe(cri, "runsc", "changed flag: runsc pod")
    assert "gVisor" in dmesg.stdout, dmesg
    listing = sudo(vm, f"ls -A {log_dir}", check=False)
    assert listing.rc == 0 and listing.stdout.split(), (
        f"runsc wrote no debug logs to {log_dir}: {listing}")


def test_edited_containerd_config_is_reconciled_with_one_restart(
    node_vm: NodeFixture, served: Served, cri: RemoteCrictl
) -> None:
    vm, m = node_vm.vm, served.mirror
    step = program_plan(mirror_config(m, served.server, CHANGED_FLAGS)).steps["containerd-config"]
    # A hand edit on the node (what `cat >>` installers leave behind).
    sudo(vm, f"printf '%s\\n' '# local edit' >> {CONFIG_TOML}")
    before = node_state(vm, m)
    starts = containerd_starts(vm)
    run = run_step(vm, step)
    TIMINGS["edited config: configure-containerd.sh"] = run.seconds
    assert run.result.rc == 0, run.log
    after = node_state(vm, m)

    assert sudo(vm, f"cat {CONFIG_TOML}").stdout == render_containerd_config(3, HANDLERS)
    assert f"updated {CONFIG_TOML}" in run.log and f"updated {RUNSC_TOML}" not in run.log
    assert run.log.count("restarted containerd") == 1, run.log
    assert "handlers configured: runc runsc" in run.log, run.log
    assert containerd_starts(vm) == [*starts, after.unit["InvocationID"]]
    assert after.unit["MainPID"] != before.unit["MainPID"]
    assert int(after.unit["ActiveEnterTimestampMonotonic"]) > int(
        before.unit["ActiveEnterTimestampMonotonic"])
    cri.wait_runtime_ready()


def test_a_replaced_runsc_is_reinstalled_from_the_pinned_release(
    node_vm: NodeFixture, plan: ProgramPlan, served: Served
) -> None:
    vm, m = node_vm.vm, served.mirror
    runsc = "/usr/local/bin/runsc"
    before = node_state(vm, m)
    sudo(vm, f"printf '#!/bin/sh\\necho runsc version tampered\\n' > {runsc}")
    mark = served.server.mark()
    run = run_step(vm, plan.steps["gvisor"])
    assert run.result.rc == 0, run.log
    assert "installed files changed since they were installed" in run.log, run.log
    assert f"gVisor {m.gvisor_release} installed" in run.log, run.log
    after = node_state(vm, m)
    assert after.files[runsc][0] == before.files[runsc][0] == m.expected_installs[runsc]
    assert after.stamps == before.stamps
    assert after.unit == before.unit  # runsc is run per pod: containerd keeps running
    assert sorted(p for p, _ in served.server.requests_since(mark)) == sorted(
        m.url_path(f"{b}{ext}") for b in ("runsc", "containerd-shim-runsc-v1")
        for ext in ("", ".sha512"))
