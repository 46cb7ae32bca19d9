"""The lab mirror (tools/build-lab-mirror.sh): built on demand, read back, served in a netns.

`ensure_mirror()` runs the build script (a no-op once the mirror of the pinned versions
exists) and loads its manifest.json. `serve_mirror()` runs, inside a network namespace the
caller names by a command prefix (e.g. ``nsenter -t PID -n``), the registry read-only on
ADDR:5000 and a static file server for ``files/`` on ADDR:8080; both are stopped when the block
ends. `network_namespace()` makes such a namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.spec import DEFAULTS

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "build-lab-mirror.sh"
REGISTRY_PORT = 5000
FILES_PORT = 8080
BUILD_TIMEOUT_S = 3 * 3600
START_TIMEOUT_S = 30.0


class MirrorError(RuntimeError):
    pass


@dataclass(frozen=True)
class MirrorFile:
    path: str  # relative to the mirror root: files/<host>/<path>
    url: str  # the upstream URL it stands for
    sha256: str
    sha512: str | None

    @property
    def served_path(self) -> str:
        """The path under the file server: /<host>/<path>, the URL without its scheme."""
        return "/" + self.url.split("://", 1)[1]


@dataclass(frozen=True)
class MirrorImage:
    name: str
    reference: str  # upstream: registry.k8s.io/pause:3.10.1
    repository: str
    tag: str
    digest: str  # of the manifest, sha256:...
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    working_dir: str
    user: str


@dataclass(frozen=True)
class Mirror:
    root: Path
    key: str
    versions: dict[str, str]
    files: tuple[MirrorFile, ...]
    images: tuple[MirrorImage, ...]
    debian_packages: dict[str, str]
    registry: Path  # the registry binary
    crane: Path

    @property
    def registry_storage(self) -> Path:
        return self.root / "registry"

    def file(self, url: str) -> MirrorFile:
        for f in self.files:
            if f.url == url:
                return f
        raise KeyError(url)

    def image(self, reference: str) -> MirrorImage:
        for image in self.images:
            if image.reference == reference:
                return image
        raise KeyError(reference)


def _image(raw: dict[str, Any]) -> MirrorImage:
    config = raw["config"]
    return MirrorImage(
        name=raw["name"], reference=raw["reference"], repository=raw["repository"],
        tag=raw["tag"], digest=raw["digest"],
        entrypoint=tuple(config.get("Entrypoint") or ()), cmd=tuple(config.get("Cmd") or ()),
        env=tuple(config.get("Env") or ()), working_dir=config.get("WorkingDir") or "",
        user=config.get("User") or "")


def load_mirror(root: Path) -> Mirror:
    raw = json.loads((root / "manifest.json").read_text())
    return Mirror(
        root=root, key=raw["key"], versions=dict(raw["versions"]),
        files=tuple(MirrorFile(f["path"], f["url"], f["sha256"], f.get("sha512"))
                    for f in raw["files"]),
        images=tuple(_image(i) for i in raw["images"]),
        debian_packages=dict(raw["debian_packages"]),
        registry=root / raw["bin"]["registry"], crane=root / raw["bin"]["crane"])


def run_build_script() -> tuple[Path, str, float]:
    """Run the build script; returns the mirror root, its stderr and the seconds it took."""
    start = time.monotonic()
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise MirrorError(f"{BUILD_SCRIPT.name} failed ({proc.returncode}):\n"
                          f"{proc.stderr[-6000:]}")
    roots = [line.split(" ", 1)[1] for line in proc.stdout.splitlines()
             if line.startswith("MIRROR ")]
    if len(roots) != 1:
        raise MirrorError(f"{BUILD_SCRIPT.name} printed no MIRROR line:\n{proc.stdout}")
    return Path(roots[0]), proc.stderr, seconds


def ensure_mirror() -> Mirror:
    root, _, _ = run_build_script()
    return load_mirror(root)


def _netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


@contextlib.contextmanager
def network_namespace(address: str = "10.19.0.1/24", bridge: str = "lab0"
                      ) -> Iterator[list[str]]:
    """A private network namespace with `lo` up and `address` on a bridge (the interface VMs'
    taps join; our kernels have no dummy interfaces); yields the command prefix that runs a
    command inside it. Its holder process ends with the block, and the namespace with it."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    prefix = ["nsenter", "-t", str(holder.pid), "-n"]
    try:
        # Until unshare has made the namespace, its process is still in ours: entering it
        # then would configure this machine's network.
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + START_TIMEOUT_S
        while _netns(holder.pid) in (ours, None):
            if holder.poll() is not None or time.monotonic() > deadline:
                raise MirrorError("network namespace did not come up")
            time.sleep(0.05)
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", bridge, "type", "bridge"],
                    ["ip", "addr", "add", address, "dev", bridge],
                    ["ip", "link", "set", bridge, "up"]):
            subprocess.run([*prefix, *cmd], check=True, capture_output=True)
        yield prefix
    finally:
        holder.kill()
        holder.wait(timeout=10)


@dataclass(frozen=True)
class ServedMirror:
    address: str
    prefix: tuple[str, ...]  # runs a command in the namespace the mirror is served in

    @property
    def registry(self) -> str:
        """host:port, as a containerd hosts.toml or crane names it."""
        return f"{self.address}:{REGISTRY_PORT}"

    @property
    def files_url(self) -> str:
        return f"http://{self.address}:{FILES_PORT}"

    def run(self, *cmd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *cmd], capture_output=True, text=True,
                              timeout=timeout)


def registry_config(storage: Path, listen: str) -> str:
    """distribution's configuration: STORAGE served read-only (pushes and deletes refused)."""
    return (f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {storage}\n  maintenance:\n    uploadpurging:\n"
            f"      enabled: false\n    readonly:\n      enabled: true\n"
            f"http:\n  addr: {listen}\n")


def _wait_answering(prefix: Sequence[str], url: str, proc: subprocess.Popen[bytes],
                    log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while subprocess.run([*prefix, "curl", "-fsS", "-m", "5", "-o", "/dev/null", url],
                         capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise MirrorError(f"{url} did not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def serve_mirror(mirror: Mirror, prefix: Sequence[str], address: str) -> Iterator[ServedMirror]:
    """Serve `mirror` on `address` inside the namespace `prefix` enters: the registry
    (read-only) on port 5000, files/ on port 8080. Both are stopped when the block ends."""
    work = Path(tempfile.mkdtemp(prefix="lab-mirror-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = work / "registry.yml"
        config.write_text(registry_config(mirror.registry_storage, f"{address}:{REGISTRY_PORT}"))
        reg_log, files_log = work / "registry.log", work / "files.log"
        with reg_log.open("wb") as out:
            procs.append(subprocess.Popen(
                [*prefix, "env", "OTEL_TRACES_EXPORTER=none", str(mirror.registry), "serve",
                 str(config)], stdout=out, stderr=subprocess.STDOUT))
        with files_log.open("wb") as out:
            procs.append(subprocess.Popen(
                [*prefix, sys.executable, "-m", "http.server", "--bind", address,
                 "--directory", str(mirror.root / "files"), str(FILES_PORT)],
                stdout=out, stderr=subprocess.STDOUT))
        served = ServedMirror(address, tuple(prefix))
        _wait_answering(prefix, f"http://{served.registry}/v2/", procs[0], reg_log)
        _wait_answering(prefix, f"{served.files_url}/", procs[1], files_log)
        yield served
    finally:
        for proc in procs:
            _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def stack_sections(mirror: Mirror, files_url: str, *, upgraded: bool = False
                   ) -> dict[str, dict[str, str]]:
    """The stack configuration sections that point a cluster's downloads at this mirror's
    files served at `files_url` (e.g. http://10.19.0.1:8080): versions, base URLs and the
    checksums of the binaries built here (they are not upstream's). `upgraded`: Kubernetes at
    the version the mirror also holds for an upgrade."""
    def base(section: str) -> str:
        return files_url + "/" + str(DEFAULTS[section]["baseUrl"]).split("://", 1)[1]

    def sha(url_tail: str, algorithm: str = "sha256") -> str:
        found = [f for f in mirror.files if f.url.endswith(url_tail)]
        if len(found) != 1:
            raise MirrorError(f"{len(found)} files end with {url_tail}")
        return found[0].sha256 if algorithm == "sha256" else str(found[0].sha512)

    v = {k: s.removeprefix("v") for k, s in mirror.versions.items()}
    kubernetes = v["upgrade_kubernetes_version" if upgraded else "kubernetes_version"]
    k8s = f"/v{kubernetes}/bin/linux/amd64"
    gvisor = f"/{v['gvisor_release']}/x86_64"
    return {
        "kubernetes": {"version": kubernetes, "baseUrl": base("kubernetes"),
                       **{f"{b}Sha256": sha(f"{k8s}/{b}") for b in ("kubeadm", "kubelet",
                                                                     "kubectl")}},
        "containerd": {"version": v["containerd_version"], "baseUrl": base("containerd"),
                       "sha256": sha(f"/containerd-{v['containerd_version']}-linux-amd64.tar.gz")},
        "runc": {"version": v["runc_version"], "baseUrl": base("runc"),
                 "sha256": sha(f"/v{v['runc_version']}/runc.amd64")},
        "cniPlugins": {"version": v["cni_plugins_version"], "baseUrl": base("cniPlugins"),
                       "sha256": sha(f"/cni-plugins-linux-amd64-v{v['cni_plugins_version']}.tgz")},
        "crictl": {"version": v["crictl_version"], "baseUrl": base("crictl"),
                   "sha256": sha(f"/crictl-v{v['crictl_version']}-linux-amd64.tar.gz")},
        "gvisor": {"release": mirror.versions["gvisor_release"], "baseUrl": base("gvisor"),
                   "runscSha512": sha(f"{gvisor}/runsc", "sha512"),
                   "shimSha512": sha(f"{gvisor}/containerd-shim-runsc-v1", "sha512")},
    }
