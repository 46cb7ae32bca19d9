"""The real engine against a real libvirt: what the e2e layer needs and how it drives it.

- `missing_prerequisites()` names what this machine lacks (the Pulumi CLI, its Python language
  host, each provider plugin at exactly the version requirements.txt pins, libvirt, qemu,
  mkisofs, root); the tests skip with that one line.
- `LibvirtNamespace` starts Debian's libvirtd in a private network *and* mount namespace: its
  socket, state, logs and NAT networks exist only in there, so the machine's own network and
  any other libvirtd are never touched. Everything that talks to it (the CLI and its
  providers, virsh, ssh, the release mirror) runs inside through `nsenter`.
- `Project` is a copy of the program (Pulumi.yaml with a file:// backend in a temporary
  directory, the stack files, the checkout's venv) so tests never touch ~/.pulumi or stacks/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = "sandboxed-k8s"
PLUGINS = ("command", "kubernetes", "libvirt", "random", "tls")
HOST_TOOLS = {
    "libvirtd": "libvirt-daemon-system", "virtlogd": "libvirt-daemon-system",
    "virsh": "libvirt-clients", "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils", "mkisofs": "genisoimage", "dnsmasq": "dnsmasq-base",
    "iptables": "iptables", "nsenter": "util-linux", "unshare": "util-linux",
    "ssh": "openssh-client",
}
# The engine never reaches out: no update checks, no plugin downloads, no ambient plugins.
ENGINE_ENV = {
    "PULUMI_SKIP_UPDATE_CHECK": "true",
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
    "PULUMI_CONFIG_PASSPHRASE": "e2e-passphrase",
    "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
    "PULUMI_DEBUG_COMMANDS": "true",  # offers `up --event-log` (each resource's timing)
}


class E2EError(RuntimeError):
    pass


def pinned_plugin_versions(requirements: Path = REPO_ROOT / "requirements.txt"
                           ) -> dict[str, str]:
    """pulumi-<name>==<version> lines of requirements.txt -> {name: version}."""
    pins: dict[str, str] = {}
    for line in requirements.read_text().splitlines():
        match = re.fullmatch(r"pulumi-([a-z]+)==(\S+)", line.strip())
        if match and match.group(1) in PLUGINS:
            pins[match.group(1)] = match.group(2)
    return pins


def installed_plugins(env: Mapping[str, str]) -> set[tuple[str, str]]:
    """(name, version) of the resource plugins the CLI has installed."""
    proc = subprocess.run(["pulumi", "plugin", "ls", "--json"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        return set()
    return {(p["name"], p["version"]) for p in json.loads(proc.stdout or "[]")
            if p.get("kind") == "resource"}


def missing_prerequisites() -> list[str]:
    """Everything the e2e layer needs that this machine lacks, as short phrases."""
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append("root (it starts libvirtd in its own namespaces)")
    for tool in ("pulumi", "pulumi-language-python", "pulumi-language-python-exec"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} on PATH")
    for tool, package in HOST_TOOLS.items():
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            missing.append(f"{tool} ({package})")
    if shutil.which("pulumi") is not None:
        have = installed_plugins(ENGINE_ENV)
        plugins = [f"{name} {version}" for name, version in pinned_plugin_versions().items()
                   if (name, version) not in have]
        if plugins:
            missing.append(f"the Pulumi plugins {', '.join(plugins)} (pulumi plugin install "
                           "resource NAME VERSION)")
    return missing


# ---------------------------------------------------------------------------------------------
# libvirtd in its own namespaces
# ---------------------------------------------------------------------------------------------

# Directories libvirtd and virtlogd write; each gets a private tmpfs inside the namespace.
PRIVATE_DIRS = ("/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt")
QEMU_CONF_EXTRA = """
# e2e: qemu runs as root with no security driver (no AppArmor/SELinux in test sandboxes), so
# it reads the kernel, initrd and images wherever the test keeps them.
user = "root"
group = "root"
security_driver = "none"
remember_owner = 0
"""
START_SCRIPT = """set -euo pipefail
ip link set lo up
for d in {dirs}; do mount -t tmpfs tmpfs "$d"; done
mount --bind {etc} /etc/libvirt
virtlogd -d
libvirtd -d
for _ in $(seq 100); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.2; done
[ -S /run/libvirt/libvirt-sock ]
echo ready
exec sleep infinity
"""


class LibvirtNamespace:
    """libvirtd (qemu:///system inside) in a new network + mount namespace."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.etc = workdir / "etc-libvirt"
        self.pool_dir = workdir / "pool"
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60.0) -> None:
        for d in PRIVATE_DIRS:
            Path(d).mkdir(parents=True, exist_ok=True)  # mount points (left empty outside)
        shutil.copytree("/etc/libvirt", self.etc, symlinks=True)
        # Nothing of the package's own in here: no predefined (or autostarted) network.
        networks = self.etc / "qemu" / "networks"
        for path in [*(networks / "autostart").glob("*"), *networks.glob("*.xml")]:
            path.unlink()
        with (self.etc / "qemu.conf").open("a") as f:
            f.write(QEMU_CONF_EXTRA)
        script = START_SCRIPT.format(dirs=" ".join(PRIVATE_DIRS), etc=self.etc)
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--net", "--propagation", "private", "bash", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()
        if line.strip() != "ready" or time.monotonic() > deadline:
            _, err = self.proc.communicate(timeout=10)
            raise E2EError(f"libvirtd did not start in its namespace: {line}{err}")
        self.pool_dir.mkdir(parents=True, exist_ok=True)
        self.virsh("pool-define-as", "default", "dir", "--target", str(self.pool_dir))
        self.virsh("pool-start", "default")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def prefix(self, cwd: Path | None = None) -> list[str]:
        """argv prefix that runs a command inside the namespaces, in `cwd` (changed to
        inside: a directory opened outside is unreachable from the new mount namespace)."""
        inside = ["sh", "-c", 'cd "$0" && exec "$@"', str(cwd)] if cwd is not None else []
        return ["nsenter", "-t", str(self.pid), "-m", "-n", "--", *inside]

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 600.0, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.prefix(cwd), *argv], env={**os.environ, **(env or {})},
                              capture_output=True, text=True, timeout=timeout,
                              input=stdin, check=False)
        if check and proc.returncode != 0:
            raise E2EError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*self.prefix(), *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    def virsh(self, *args: str, check: bool = True) -> str:
        return self.run(["virsh", "-c", "qemu:///system", *args], check=check,
                        timeout=120).stdout

    def inventory(self) -> dict[str, list[str]]:
        """Every domain, volume (of the pool) and network libvirt knows, by name."""
        volumes = [line.split()[0] for line in
                   self.virsh("vol-list", "default").splitlines()[2:] if line.strip()]
        return {"domains": sorted(self.virsh("list", "--all", "--name").split()),
                "volumes": sorted(volumes),
                "networks": sorted(self.virsh("net-list", "--all", "--name").split())}

    def stop(self) -> None:
        if self.proc is None:
            return
        # Domains first (qemu processes are children of libvirtd, not of the namespace).
        for name in self.virsh("list", "--name", check=False).split():
            self.virsh("destroy", name, check=False)
        # Only the daemons of this namespace (those whose network namespace is ours), found
        # while the namespace's first process still holds it.
        daemons = [pid for name in ("libvirtd", "virtlogd", "dnsmasq")
                   for pid in _pids_in_netns_of(self.proc.pid, name)]
        for pid in daemons:
            with _suppress():
                os.kill(pid, signal.SIGTERM)
        os.killpg(self.proc.pid, signal.SIGTERM)
        with _suppress():
            self.proc.wait(timeout=30)
        self.proc = None


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def _pids_in_netns_of(pid: int, name: str) -> list[int]:
    """Processes called `name` sharing the network namespace of `pid`."""
    try:
        ours = os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pid:
            continue
        try:
            if (entry / "comm").read_text().strip() == name and \
                    os.readlink(entry / "ns" / "net") == ours:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# ---------------------------------------------------------------------------------------------
# The program as a Pulumi project with a local backend
# ---------------------------------------------------------------------------------------------

PROGRAM_FILES = ("__main__.py", "components", "requirements.txt")


@dataclass
class Project:
    """A copy of the program with its own file:// backend, run by the real CLI inside `ns`."""

    root: Path
    ns: LibvirtNamespace

    @classmethod
    def create(cls, root: Path, ns: LibvirtNamespace) -> Project:
        root.mkdir(parents=True, exist_ok=True)
        for name in PROGRAM_FILES:
            src = REPO_ROOT / name
            if src.is_dir():
                shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, root / name)
        project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
        (root / "state").mkdir()
        project["backend"] = {"url": f"file://{root / 'state'}"}
        (root / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
        shutil.copytree(REPO_ROOT / "stacks", root / "stacks")
        (root / ".venv").symlink_to(REPO_ROOT / ".venv")
        return cls(root, ns)

    @property
    def env(self) -> dict[str, str]:
        return dict(ENGINE_ENV)

    def pulumi(self, *args: str, stack: str, timeout: float = 3600.0, check: bool = True
               ) -> subprocess.CompletedProcess[str]:
        return self.ns.run(["pulumi", *args, "--stack", stack, "--non-interactive",
                            "--color", "never"], env=self.env, cwd=self.root,
                           timeout=timeout, check=check)

    def init_stack(self, stack: str, config: Mapping[str, Any] | None = None) -> None:
        """`pulumi stack init`; `config` (keys with the project prefix) replaces the file's."""
        if config is not None:
            (self.root / "stacks" / f"Pulumi.{stack}.yaml").write_text(
                yaml.safe_dump({"config": dict(config)}, sort_keys=False))
        self.pulumi("stack", "init", stack=stack, timeout=300)

    def preview_steps(self, stack: str, *extra: str) -> list[dict[str, Any]]:
        proc = self.pulumi("preview", "--json", *extra, stack=stack)
        steps: list[dict[str, Any]] = json.loads(proc.stdout).get("steps", [])
        return steps
