"""A containerd daemon started as a plain process with a private config, root, state and socket.

No systemd here: `start_containerd` runs `containerd --config --root --state --address` in its
own session, waits until the API answers, and `Containerd.stop` tears it down: CRI pods first,
then the daemon, then any shim or sandbox process still running from this daemon's folders
(found by pid through /proc), then any mount left under those folders.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tools import ContainerdFlavor

READY_TIMEOUT = 60.0


class ContainerdError(RuntimeError):
    pass


def config_dump(flavor: ContainerdFlavor, config: Path) -> str:
    """`containerd --config F config dump`: the merged config the daemon would run with."""
    proc = subprocess.run(
        [str(flavor.containerd), "--config", str(config), "config", "dump"],
        capture_output=True,
        text=True,
        env=flavor.env(),
        timeout=60,
    )
    if proc.returncode != 0:
        raise ContainerdError(f"config dump failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def parse_dump(dump: str) -> dict[str, Any]:
    return tomllib.loads(dump)


def cri_runtimes(dump: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The CRI runtime tables of a parsed dump, whichever plugin name this version uses."""
    plugins = dump.get("plugins", {})
    for plugin in ("io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri"):
        runtimes = plugins.get(plugin, {}).get("containerd", {}).get("runtimes")
        if runtimes is not None:
            return dict(runtimes)
    return {}


def cri_snapshotter(dump: dict[str, Any]) -> str:
    plugins = dump.get("plugins", {})
    if "io.containerd.cri.v1.images" in plugins:
        return str(plugins["io.containerd.cri.v1.images"]["snapshotter"])
    return str(plugins["io.containerd.grpc.v1.cri"]["containerd"]["snapshotter"])


def cri_sandbox_image(dump: dict[str, Any]) -> str:
    plugins = dump.get("plugins", {})
    if "io.containerd.cri.v1.images" in plugins:
        return str(plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"])
    return str(plugins["io.containerd.grpc.v1.cri"]["sandbox_image"])


@dataclass
class Containerd:
    flavor: ContainerdFlavor
    workdir: Path
    config: Path
    socket: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.flavor.ctr), "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            env=self.flavor.env(),
            timeout=timeout,
        )

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def import_image(self, archive: Path, snapshotter: str) -> None:
        proc = self.ctr("images", "import", "--snapshotter", snapshotter, str(archive))
        if proc.returncode != 0:
            raise ContainerdError(
                f"ctr images import {archive} failed:\n{proc.stdout}\n{proc.stderr}"
            )

    def stop(self) -> None:
        """Stop the daemon, then end what it left running and unmount what it left mounted."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        _kill_processes_mentioning(str(self.workdir))
        _unmount_under(self.workdir)


def start_containerd(flavor: ContainerdFlavor, config: Path, workdir: Path) -> Containerd:
    root, state = workdir / "root", workdir / "state"
    root.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    socket = workdir / "containerd.sock"
    log = workdir / "containerd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(flavor.containerd),
                "--config",
                str(config),
                "--root",
                str(root),
                "--state",
                str(state),
                "--address",
                str(socket),
                "--log-level",
                "info",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=flavor.env(),
            start_new_session=True,
        )
    daemon = Containerd(flavor, workdir, config, socket, log, proc)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            daemon.stop()
            raise ContainerdError(
                f"containerd {flavor.name} exited with {proc.returncode}:\n{daemon.log_tail()}"
            )
        if socket.exists() and daemon.ctr("version", timeout=10).returncode == 0:
            return daemon
        if time.monotonic() > deadline:
            daemon.stop()
            raise ContainerdError(
                f"containerd {flavor.name} not ready after {READY_TIMEOUT}s:\n{daemon.log_tail()}"
            )
        time.sleep(0.2)


def _kill_processes_mentioning(marker: str) -> None:
    """SIGKILL, by pid, every process whose command line names `marker` (this daemon's
    private folder): shims (`-address <dir>/containerd.sock`) and runsc sandboxes/gofers
    (`--bundle=<dir>/state/...`). Only processes started for this fixture carry it."""
    own = os.getpid()
    for _ in range(3):
        victims = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == own:
                continue
            try:
                cmdline = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
            if marker in cmdline:
                victims.append(int(entry.name))
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def _unmount_under(workdir: Path) -> None:
    prefix = str(workdir) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mountpoint = line.split()[4].encode().decode("unicode_escape")
        if mountpoint.startswith(prefix):
            mounts.append(mountpoint)
    for mountpoint in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
