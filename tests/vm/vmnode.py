"""What the node scripts left in the VM (files, stamps, containerd's unit), and crictl inside
it against the node's containerd."""

from __future__ import annotations

import contextlib
import json
import shlex
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from components.render.firewall import RULESET_PATH, UNIT
from tests.node.cri import NETWORK_NODE
from tests.node.nodes import TEST_IMAGE

from .harness import BootedVM
from .releases import ReleaseMirror
from .ssh import RunResult

CONFIG_TOML = "/etc/containerd/config.toml"
FIREWALL_UNIT_PATH = f"/etc/systemd/system/{UNIT}"
RUNSC_TOML = "/etc/containerd/runsc.toml"
STATE_DIR = "/var/lib/sandboxed-k8s"
CONTAINERD_SOCK = "unix:///run/containerd/containerd.sock"
TEST_DIR = "/opt/sk8s-test"  # test-only files in the VM, away from what the scripts install
CRICTL = f"{TEST_DIR}/bin/crictl"
CRICTL_CONFIG = f"{TEST_DIR}/crictl.yaml"
REMOTE_IMAGES = f"{TEST_DIR}/images"

POD_TIMEOUT_S = 600.0
CRI_READY_TIMEOUT_S = 300.0
# systemd's "unit started" journal message (SD_MESSAGE_UNIT_STARTED).
UNIT_STARTED_MESSAGE_ID = "39f53479d3a045ac8e11786248231fbf"


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
