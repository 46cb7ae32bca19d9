"""A local release mirror laid out like the upstream download sites, served on 127.0.0.1.

The node scripts fetch ``<base URL>/<upstream path>``; only the base URLs change, so the
scripts run unmodified. The guest reaches the host's loopback as 10.0.2.2 through qemu's
user-mode network (``GUEST_HOST_ADDRESS``).

Layout under the served root (versions are those of the binaries put in):

    containerd/v<V>/containerd-<V>-linux-amd64.tar.gz   bin/{containerd,containerd-shim-runc-v2,ctr}
    runc/v<R>/runc.amd64
    cni-plugins/v<C>/cni-plugins-linux-amd64-v<C>.tgz   ./bridge, ./loopback, ...
    gvisor/<YYYYMMDD>/x86_64/{runsc,containerd-shim-runsc-v1}[.sha512]

Archives are written deterministically (fixed mtimes, owners and gzip header), so the same
binaries always give the same sha256.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import re
import shutil
import socketserver
import subprocess
import tarfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

GUEST_HOST_ADDRESS = "10.0.2.2"  # the host's loopback as seen from a qemu user-mode guest
DEBIAN_RUNC = Path("/usr/sbin/runc")
DEBIAN_CNI_DIR = Path("/usr/lib/cni")
CNI_PACKAGE = "containernetworking-plugins"
CONTAINERD_ARCHIVE_BINS = ("containerd", "containerd-shim-runc-v2", "ctr")
GVISOR_BINS = ("runsc", "containerd-shim-runsc-v1")
APT_TIMEOUT_S = 600


class MirrorError(RuntimeError):
    pass


def sha256_file(path: Path) -> str:
    return _digest(path, "sha256")


def sha512_file(path: Path) -> str:
    return _digest(path, "sha512")


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _upstream_version(text: str) -> str:
    """"1.1.5+ds1-1+deb12u1" / "v2.2.9" -> "1.1.5" / "2.2.9"."""
    match = re.search(r"(\d+\.\d+\.\d+)", text)
    if not match:
        raise MirrorError(f"no x.y.z version in {text!r}")
    return match.group(1)


def ensure_cni_plugins() -> None:
    """Debian's CNI plugins (apt-get install when missing; apt-get update only if needed)."""
    if (DEBIAN_CNI_DIR / "bridge").is_file():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", CNI_PACKAGE]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True,
                       timeout=APT_TIMEOUT_S)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=APT_TIMEOUT_S)
    if proc.returncode != 0 or not (DEBIAN_CNI_DIR / "bridge").is_file():
        raise MirrorError(f"apt-get install {CNI_PACKAGE} failed:\n{proc.stderr[-3000:]}")


def runc_version(runc: Path = DEBIAN_RUNC) -> str:
    out = subprocess.run([str(runc), "--version"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    return _upstream_version(out.splitlines()[0])  # "runc version 1.1.5+ds1"


def cni_plugins_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", CNI_PACKAGE],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return _upstream_version(out)


def gvisor_release(runsc: Path) -> str:
    """A dated release name (YYYYMMDD) for a Go-built runsc, from its pseudo-version's date."""
    out = subprocess.run([str(runsc), "--version"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    # "runsc version v0.0.0-20260905035102-160fafc42237" (the `go` branch has no tags)
    match = re.search(r"-(\d{8})\d{6}-", out)
    if not match:
        raise MirrorError(f"cannot date runsc from its version: {out!r}")
    return match.group(1)


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def write_tgz(dest: Path, entries: Mapping[str, Path | None]) -> None:
    """A .tar.gz of `entries` (archive name -> file, or None for a directory), reproducibly."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, path in entries.items():
            _tar_add(tar, name, None if path is None else path.read_bytes(), 0o755)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                 mtime=0, compresslevel=1) as gz:
        gz.write(buf.getvalue())


@dataclass(frozen=True)
class Artifact:
    version: str
    path: Path  # the archive or binary as served
    sha256: str


@dataclass(frozen=True)
class ReleaseMirror:
    """What was laid out: served artifacts with their checksums, and the source binaries."""

    root: Path
    containerd: Artifact
    runc: Artifact
    cni_plugins: Artifact
    gvisor_release: str
    gvisor_sha512: dict[str, str]  # runsc / containerd-shim-runsc-v1 -> hex
    # Where each installed node binary must come from: node path -> sha256 of its source.
    expected_installs: dict[str, str] = field(default_factory=dict)

    def url_path(self, artifact: str) -> str:
        """The path (under the served root) a node script fetches `artifact` from."""
        return "/" + str(self.path_of(artifact).relative_to(self.root))

    def path_of(self, artifact: str) -> Path:
        paths = {"containerd": self.containerd.path, "runc": self.runc.path,
                 "cni-plugins": self.cni_plugins.path}
        if artifact in paths:
            return paths[artifact]
        return self.root / "gvisor" / self.gvisor_release / "x86_64" / artifact


def build_mirror(root: Path, bins: Mapping[str, Path], containerd_version: str) -> ReleaseMirror:
    """Lay out the mirror under `root` from the Go-built `bins` and Debian's runc and CNI."""
    ensure_cni_plugins()
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    v = containerd_version
    containerd_tgz = root / "containerd" / f"v{v}" / f"containerd-{v}-linux-amd64.tar.gz"
    entries: dict[str, Path | None] = {"bin": None}
    for name in CONTAINERD_ARCHIVE_BINS:
        entries[f"bin/{name}"] = bins[name]
        expected[f"/usr/local/bin/{name}"] = sha256_file(bins[name])
    write_tgz(containerd_tgz, entries)

    r = runc_version()
    runc_file = root / "runc" / f"v{r}" / "runc.amd64"
    runc_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEBIAN_RUNC, runc_file)
    expected["/usr/local/sbin/runc"] = sha256_file(DEBIAN_RUNC)

    c = cni_plugins_version()
    cni_tgz = root / "cni-plugins" / f"v{c}" / f"cni-plugins-linux-amd64-v{c}.tgz"
    plugins = sorted(p for p in DEBIAN_CNI_DIR.iterdir() if p.is_file())
    if not plugins:
        raise MirrorError(f"no CNI plugins in {DEBIAN_CNI_DIR}")
    write_tgz(cni_tgz, {f"./{p.name}": p for p in plugins})
    for p in plugins:
        expected[f"/opt/cni/bin/{p.name}"] = sha256_file(p)

    release = gvisor_release(bins["runsc"])
    gvisor_dir = root / "gvisor" / release / "x86_64"
    gvisor_dir.mkdir(parents=True, exist_ok=True)
    sha512: dict[str, str] = {}
    for name in GVISOR_BINS:
        shutil.copyfile(bins[name], gvisor_dir / name)
        sha512[name] = sha512_file(bins[name])
        # The format upstream publishes: sha512sum's output line.
        (gvisor_dir / f"{name}.sha512").write_text(f"{sha512[name]}  {name}\n")
        expected[f"/usr/local/bin/{name}"] = sha256_file(bins[name])

    return ReleaseMirror(
        root=root,
        containerd=Artifact(v, containerd_tgz, sha256_file(containerd_tgz)),
        runc=Artifact(r, runc_file, sha256_file(runc_file)),
        cni_plugins=Artifact(c, cni_tgz, sha256_file(cni_tgz)),
        gvisor_release=release,
        gvisor_sha512=sha512,
        expected_installs=expected,
    )


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files and records each GET (path, status) on the server."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        server = self.server
        if isinstance(server, RecordingServer):
            with server.lock:
                server.requests.append((self.path, int(code) if str(code).isdigit() else 0))


class RecordingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_RecordingHandler, directory=str(root))
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, int]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def guest_url(self, subdir: str) -> str:
        """The base URL a qemu user-mode guest uses for `subdir` of the served root."""
        return f"http://{GUEST_HOST_ADDRESS}:{self.port}/{subdir}"

    def requests_since(self, mark: int) -> list[tuple[str, int]]:
        with self.lock:
            return list(self.requests[mark:])

    def mark(self) -> int:
        with self.lock:
            return len(self.requests)


Server = TypeVar("Server", bound=socketserver.BaseServer)


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    """Run `server` in a thread until the block ends, then stop and close it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def serve(root: Path) -> contextlib.AbstractContextManager[RecordingServer]:
    """Serve `root` on 127.0.0.1 (an ephemeral port) until the block ends."""
    return serving(RecordingServer(root))
