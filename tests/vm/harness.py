"""Boot the cached Debian 12 test image under qemu (TCG) with a NoCloud seed, talk over SSH.

Only loopback is used on the host: qemu's user-mode network forwards 127.0.0.1:PORT to the
guest's port 22. The guest reaches Debian's mirror through the same user-mode NAT (cloud-init's
``packages``), never anything on the host's own networks.

SSH always pins the guest's host key: a known_hosts file holding only the expected key under a
fixed alias, ``StrictHostKeyChecking=yes``, no global known_hosts, no ssh config, no agent.

Typical use::

    image = ensure_image()
    with boot_vm(image, user_data, admin_user="ops", private_key=key,
                 host_public_key=host_pub) as vm:
        vm.wait_cloud_init()
        rc, out, err = vm.run("sudo -n true")
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "build-test-vm-image.sh"

# Host-key alias used in known_hosts, so the entry does not depend on the forwarded port.
HOST_KEY_ALIAS = "sandboxed-k8s-test-vm"

DEFAULT_NETWORK_CONFIG = """\
version: 2
ethernets:
  eth0:
    dhcp4: true
"""

# TCG on two shared cores is slow: these are generous but bounded.
IMAGE_BUILD_TIMEOUT_S = 3600.0
BOOT_TIMEOUT_S = 900.0
CLOUD_INIT_TIMEOUT_S = 1500.0
RUN_TIMEOUT_S = 900.0
SSH_CONNECT_TIMEOUT_S = 30
QEMU_STOP_TIMEOUT_S = 20.0


class VMError(RuntimeError):
    """Something went wrong booting or talking to the test VM."""


class HostKeyVerificationFailed(VMError):
    """ssh refused the guest's host key (it does not match the pinned one)."""


class CommandFailed(VMError):
    """A remote command exited non-zero (or ssh itself failed, rc 255)."""

    def __init__(self, cmd: str, result: RunResult) -> None:
        self.cmd = cmd
        self.result = result
        super().__init__(
            f"remote command failed with rc={result.rc}: {cmd!r}\n"
            f"--- stdout (tail) ---\n{_tail(result.stdout)}\n"
            f"--- stderr (tail) ---\n{_tail(result.stderr)}"
        )


class RunResult(NamedTuple):
    """Result of a remote command; unpacks as ``rc, stdout, stderr``."""

    rc: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class VMImage:
    """A cached image made by tools/build-test-vm-image.sh. Never written to: boot overlays."""

    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "rootfs.qcow2"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def ensure_image(timeout: float = IMAGE_BUILD_TIMEOUT_S) -> VMImage:
    """Build the image if the cache lacks it (idempotent, cheap when cached) and return it."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise VMError(f"{BUILD_SCRIPT} failed with rc={proc.returncode}\n{_tail(proc.stderr, 60)}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise VMError(f"{BUILD_SCRIPT} printed no image directory\n{_tail(proc.stderr)}")
    image = VMImage(Path(lines[-1]))
    for path in (image.disk, image.kernel, image.initrd):
        if not path.is_file():
            raise VMError(f"image file missing: {path}")
    return image


def generate_ed25519_keypair(directory: Path, name: str, comment: str = "") -> tuple[Path, str]:
    """Make an ed25519 key pair with ssh-keygen; return (private key path, public key line)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment or name, "-f", str(key)],
        stdin=subprocess.DEVNULL,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return key, key.with_name(name + ".pub").read_text().strip()


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_known_hosts(path: Path, host_public_key: str) -> Path:
    """A known_hosts file pinning exactly one key (``type base64``) under HOST_KEY_ALIAS."""
    fields = host_public_key.split()
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key line: {host_public_key!r}")
    path.write_text(f"{HOST_KEY_ALIAS} {fields[0]} {fields[1]}\n")
    return path


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


CONNECT_RETRIES = 10
CONNECT_RETRY_DELAY_S = 3.0


def _host_key_failure(stderr: str) -> bool:
    return (
        "Host key verification failed" in stderr
        or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr
        or "No matching host key type found" in stderr
        or "no matching host key type found" in stderr
    )


def _never_connected(stderr: str) -> bool:
    """ssh failed before the SSH handshake, so the command has not run and trying again cannot
    run it twice. cloud-init restarts the guest's sshd while it configures the node: through
    qemu's user-mode forward that is a reset during identification, on a bridge a refusal."""
    return "kex_exchange_identification" in stderr or (
        "connect to host" in stderr and "Connection refused" in stderr)


class SSHClient:
    """Runs commands on and copies files to one guest user, with the host key pinned."""

    def __init__(
        self,
        *,
        port: int,
        user: str,
        private_key: Path,
        known_hosts: Path,
        host_key_type: str = "ssh-ed25519",
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ) -> None:
        self.port = port
        self.user = user
        self.private_key = private_key
        self.known_hosts = known_hosts
        self.host_key_type = host_key_type
        self.host = host
        # Runs ssh elsewhere, e.g. `nsenter -t PID -n` for a guest on a namespace's bridge.
        self.prefix = tuple(prefix)

    def ssh_command(self) -> list[str]:
        """The ssh argv up to and including the destination (append a remote command)."""
        opts = {
            "BatchMode": "yes",
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "HostKeyAlias": HOST_KEY_ALIAS,
            "HostKeyAlgorithms": self.host_key_type,
            "CheckHostIP": "no",
            "UpdateHostKeys": "no",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "ConnectTimeout": str(SSH_CONNECT_TIMEOUT_S),
            "ServerAliveInterval": "15",
            "ServerAliveCountMax": "8",
            "LogLevel": "ERROR",
        }
        argv = [*self.prefix, "ssh", "-F", "/dev/null", "-T", "-p", str(self.port),
                "-i", str(self.private_key)]
        for key, value in opts.items():
            argv += ["-o", f"{key}={value}"]
        argv.append(f"{self.user}@{self.host}")
        return argv

    def run(
        self,
        cmd: str,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float = RUN_TIMEOUT_S,
    ) -> RunResult:
        """Run ``cmd`` through the remote user's login shell; ``stdin`` is fed to it verbatim.

        A non-root user's PATH has no /usr/sbin on Debian: use ``sudo -n`` (or full paths)
        for sysctl, swapon, lsmod and the like.

        Returns ``(rc, stdout, stderr)``; rc 255 means ssh itself failed (connection or host
        key). With ``check`` a non-zero rc raises CommandFailed, or HostKeyVerificationFailed
        when the pinned key was refused.
        """
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                proc = subprocess.run(
                    [*self.ssh_command(), cmd],
                    input=stdin if stdin is not None else None,
                    stdin=subprocess.DEVNULL if stdin is None else None,
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise VMError(f"remote command timed out after {timeout:.0f}s: {cmd!r}") from exc
            result = RunResult(
                proc.returncode,
                proc.stdout.decode("utf-8", errors="replace"),
                proc.stderr.decode("utf-8", errors="replace"),
            )
            if not (result.rc == 255 and _never_connected(result.stderr)):
                break
            if attempt < CONNECT_RETRIES:
                time.sleep(CONNECT_RETRY_DELAY_S)
        if check and result.rc != 0:
            if result.rc == 255 and _host_key_failure(result.stderr):
                raise HostKeyVerificationFailed(result.stderr.strip())
            raise CommandFailed(cmd, result)
        return result

    def copy(
        self,
        local_path: str | os.PathLike[str],
        remote_path: str,
        *,
        mode: int | None = None,
        sudo: bool = False,
        timeout: float = RUN_TIMEOUT_S,
    ) -> None:
        """Copy a local file or directory to ``remote_path`` over the pinned SSH connection.

        A file is written to a temporary name next to the target, given ``mode`` (default:
        the local file's permission bits), renamed into place and its sha256 checked, so a
        retried or interrupted copy never leaves a half-written target. A directory is
        streamed as a tar archive and unpacked into ``remote_path`` (created if missing).
        With ``sudo`` the remote side runs as root (``sudo -n``), for system paths.
        """
        local = Path(local_path)
        if local.is_dir():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(str(local), arcname=".")
            target = shlex.quote(remote_path)
            script = f"set -e; mkdir -p {target}; tar -xf - -C {target} --no-same-owner"
            self.run(_shell(script, sudo), stdin=buf.getvalue(), timeout=timeout)
            return
        data = local.read_bytes()
        file_mode = mode if mode is not None else local.stat().st_mode & 0o7777
        target = shlex.quote(remote_path)
        script = (
            "set -e; umask 077; "
            f'd=$(dirname {target}); mkdir -p "$d"; '
            't=$(mktemp "$d/.sk8s-copy.XXXXXX"); '
            "trap 'rm -f \"$t\"' EXIT; "
            'cat > "$t"; '
            f'chmod {file_mode:o} "$t"; '
            f'mv -f "$t" {target}; trap - EXIT; '
            f"sha256sum {target}"
        )
        result = self.run(_shell(script, sudo), stdin=data, timeout=timeout)
        remote_digest = result.stdout.split()[0] if result.stdout.split() else ""
        local_digest = hashlib.sha256(data).hexdigest()
        if remote_digest != local_digest:
            raise VMError(
                f"copy of {local} to {remote_path} corrupted: "
                f"sha256 {remote_digest!r} != {local_digest!r}"
            )

    def wait_cloud_init(
        self, timeout: float = CLOUD_INIT_TIMEOUT_S, *, check: bool = True
    ) -> CloudInitStatus:
        """Block until cloud-init has finished all stages (``cloud-init status --wait``).

        With ``check`` (the default) raise VMError, with the warnings and errors from
        /var/log/cloud-init.log, unless it finished as ``done`` with no errors recorded.
        """
        waited = self.run(
            f"timeout {int(timeout)} cloud-init status --wait --long",
            check=False,
            timeout=timeout + 60,
        )
        status_json = self.run(
            "cat /run/cloud-init/status.json /run/cloud-init/result.json", check=False
        )
        log = self.run(
            "sudo -n grep -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log "
            "|| grep -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log",
            check=False,
        )
        status = CloudInitStatus.parse(waited, status_json.stdout, log.stdout)
        if check and not status.ok:
            raise VMError(status.report())
        return status


@dataclass(frozen=True)
class CloudInitStatus:
    rc: int
    status: str
    errors: tuple[str, ...]
    detail: str
    log_problems: str

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "done" and not self.errors

    @property
    def summary(self) -> str:
        return f"rc={self.rc} status={self.status!r} errors={list(self.errors)!r}"

    def report(self) -> str:
        return (
            f"cloud-init did not finish cleanly: {self.summary}\n"
            f"--- cloud-init status --long ---\n{self.detail}\n"
            f"--- cloud-init.log warnings/errors (tail) ---\n{_tail(self.log_problems, 60)}"
        )

    @classmethod
    def parse(cls, waited: RunResult, json_docs: str, log_problems: str = "") -> CloudInitStatus:
        status = ""
        for line in waited.stdout.splitlines():
            if line.startswith("status:"):
                status = line.split(":", 1)[1].strip()
        errors: list[str] = []
        decoder = json.JSONDecoder()
        text = json_docs.strip()
        while text:
            try:
                doc, end = decoder.raw_decode(text)
            except json.JSONDecodeError:
                errors.append(f"unparseable cloud-init status json: {text[:200]!r}")
                break
            text = text[end:].lstrip()
            v1 = doc.get("v1", {}) if isinstance(doc, dict) else {}
            errors += [str(e) for e in v1.get("errors", [])]
            for stage, info in v1.items():
                if isinstance(info, dict):
                    errors += [f"{stage}: {e}" for e in info.get("errors", []) or []]
        return cls(waited.rc, status, tuple(errors), waited.stdout + waited.stderr, log_problems)


def _shell(script: str, sudo: bool) -> str:
    return f"{'sudo -n ' if sudo else ''}sh -c {shlex.quote(script)}"


def _qemu_path(path: Path) -> str:
    # qemu's option parser treats ',' as a separator; ',,' is a literal comma.
    return str(path).replace(",", ",,")


class BootedVM(SSHClient):
    """A running guest: SSH as the admin user plus the paths of its qemu artefacts."""

    def __init__(
        self,
        *,
        process: subprocess.Popen[bytes],
        workdir: Path,
        console_log: Path,
        qga_socket: Path,
        port: int,
        user: str,
        private_key: Path,
        known_hosts: Path,
        host_key_type: str,
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ) -> None:
        super().__init__(
            port=port,
            user=user,
            private_key=private_key,
            known_hosts=known_hosts,
            host_key_type=host_key_type,
            host=host,
            prefix=prefix,
        )
        self.process = process
        self.workdir = workdir
        self.console_log = console_log
        self.qga_socket = qga_socket
        self.boot_seconds: float | None = None

    def client(
        self,
        *,
        user: str | None = None,
        private_key: Path | None = None,
        host_public_key: str | None = None,
    ) -> SSHClient:
        """Another client for this guest, e.g. a different user or a different pinned key."""
        known_hosts = self.known_hosts
        key_type = self.host_key_type
        if host_public_key is not None:
            known_hosts = write_known_hosts(
                self.workdir / f"known_hosts.{uuid.uuid4().hex[:8]}", host_public_key
            )
            key_type = host_public_key.split()[0]
        return SSHClient(
            port=self.port,
            user=user or self.user,
            private_key=private_key or self.private_key,
            known_hosts=known_hosts,
            host_key_type=key_type,
            host=self.host,
            prefix=self.prefix,
        )

    def console_tail(self, lines: int = 60) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return _tail(text, lines)

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_for_ssh(self, timeout: float = BOOT_TIMEOUT_S) -> float:
        """Poll until ``true`` succeeds over pinned SSH; return the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        last = RunResult(-1, "", "(no attempt yet)")
        while time.monotonic() < deadline:
            if not self.alive():
                raise VMError(
                    f"qemu exited with rc={self.process.returncode} before SSH came up\n"
                    f"--- console (tail) ---\n{self.console_tail()}"
                )
            remaining = max(5.0, deadline - time.monotonic())
            try:
                last = self.run("true", check=False, timeout=min(90.0, remaining))
            except VMError as exc:  # a single hung attempt; try again
                last = RunResult(-1, "", str(exc))
            if last.rc == 0:
                return time.monotonic() - start
            if last.rc == 255 and _host_key_failure(last.stderr):
                # sshd only starts after cloud-init installed the keys, so a mismatch is
                # final: fail closed at once instead of retrying until the deadline.
                raise HostKeyVerificationFailed(
                    f"guest presented a host key other than the pinned one:\n{last.stderr}"
                )
            time.sleep(3)
        raise VMError(
            f"SSH not ready after {timeout:.0f}s; last ssh rc={last.rc}: {last.stderr.strip()}\n"
            f"--- console (tail) ---\n{self.console_tail()}"
        )

    def boot_id(self) -> str:
        return self.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def reboot(self, timeout: float = BOOT_TIMEOUT_S) -> float:
        """Reboot the guest (qemu reloads the same kernel and initrd) and wait until pinned
        SSH answers from the new boot; return the seconds that took."""
        old = self.boot_id()
        start = time.monotonic()
        # ssh may be cut off by the reboot: its exit status says nothing.
        self.run("sudo -n systemctl reboot", check=False, timeout=120)
        deadline = start + timeout
        while time.monotonic() < deadline:
            self.wait_for_ssh(timeout=max(30.0, deadline - time.monotonic()))
            rc, out, _ = self.run("cat /proc/sys/kernel/random/boot_id", check=False)
            if rc == 0 and out.strip() and out.strip() != old:
                return time.monotonic() - start
            time.sleep(3)  # still the old boot, shutting down
        raise VMError(
            f"guest did not come back from reboot within {timeout:.0f}s\n"
            f"--- console (tail) ---\n{self.console_tail()}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=QEMU_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=QEMU_STOP_TIMEOUT_S)


def make_seed(
    path: Path,
    user_data: str,
    meta_data: str | None = None,
    network_config: str | None = None,
) -> Path:
    """Write a NoCloud seed image (volume label ``cidata``) with cloud-localds."""
    work = path.parent
    ud = work / "user-data"
    md = work / "meta-data"
    nc = work / "network-config"
    ud.write_text(user_data)
    md.write_text(
        meta_data if meta_data is not None else f"instance-id: sk8s-test-{uuid.uuid4().hex[:12]}\n"
    )
    nc.write_text(network_config if network_config is not None else DEFAULT_NETWORK_CONFIG)
    subprocess.run(
        ["cloud-localds", f"--network-config={nc}", str(path), str(ud), str(md)],
        stdin=subprocess.DEVNULL,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return path


def qemu_argv(
    image: VMImage,
    *,
    overlay: Path,
    seed: Path,
    console_log: Path,
    qga_socket: Path,
    pidfile: Path,
    port: int,
    memory_mb: int,
    cpus: int,
    cpu_model: str,
    extra_kernel_args: str,
    mac: str | None = None,
    guest_agent_channel: bool = True,
    tap: str | None = None,
) -> list[str]:
    append = f"root=/dev/vda rw console=ttyS0 net.ifnames=0 {extra_kernel_args}".strip()
    nic = "virtio-net-pci,netdev=net0" + (f",mac={mac}" if mac else "")
    netdev = (f"tap,id=net0,ifname={tap},script=no,downscript=no" if tap
              else f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22")
    argv = [
        "qemu-system-x86_64",
        "-name", "sk8s-test-vm",
        "-machine", "pc",
        "-accel", "tcg,thread=multi",
        "-cpu", cpu_model,
        "-smp", str(cpus),
        "-m", str(memory_mb),
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-vga", "none",
        "-monitor", "none",
        "-serial", f"file:{_qemu_path(console_log)}",
        "-pidfile", _qemu_path(pidfile),
        "-kernel", _qemu_path(image.kernel),
        "-initrd", _qemu_path(image.initrd),
        "-append", append,
        "-drive",
        f"file={_qemu_path(overlay)},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
        "-drive", f"file={_qemu_path(seed)},if=virtio,format=raw,readonly=on",
        "-netdev", netdev,
        "-device", nic,
        "-device", "virtio-rng-pci",
    ]  # fmt: skip
    if guest_agent_channel:
        argv += [
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=qga0,path={_qemu_path(qga_socket)},server=on,wait=off",
            "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ]  # fmt: skip
    return argv


@dataclass(frozen=True)
class TapNic:
    """The guest's NIC as a tap device on a bridge in a network namespace (instead of qemu's
    user-mode network): qemu and ssh run through ``prefix`` (which enters the namespace), the
    tap ``name`` exists there already, and SSH goes to ``address`` port 22. The guest's
    address must come from the seed's network-config."""

    prefix: tuple[str, ...]
    name: str
    address: str


@contextlib.contextmanager
def boot_vm(
    image: VMImage,
    user_data: str,
    *,
    admin_user: str,
    private_key: Path,
    host_public_key: str,
    meta_data: str | None = None,
    network_config: str | None = None,
    workdir: Path | None = None,
    memory_mb: int = 2048,
    cpus: int = 2,
    cpu_model: str = "max",
    disk_size: str | None = None,
    extra_kernel_args: str = "",
    mac: str | None = None,
    guest_agent_channel: bool = True,
    boot_timeout: float = BOOT_TIMEOUT_S,
    tap: TapNic | None = None,
) -> Iterator[BootedVM]:
    """Boot a throw-away overlay of ``image`` with the given cloud-init seed; yield once SSH
    (as ``admin_user`` with ``private_key``, host key pinned to ``host_public_key``) works.

    qemu's user-mode network puts the guest at 10.0.2.15/24 (gateway 10.0.2.2, DNS 10.0.2.3),
    so a static ``network_config`` must use those; ``mac`` sets the NIC's address for configs
    that match on it. With ``tap`` the NIC is that tap device instead (see TapNic).
    ``guest_agent_channel`` adds the virtio-serial port qemu-guest-agent
    needs (``org.qemu.guest_agent.0``, socket ``qga.sock`` in the work directory).

    On exit qemu is stopped and the overlay and seed are deleted. When ``workdir`` is given
    the console log and known_hosts stay there for post-mortems; otherwise a temporary
    directory is used and removed.
    """
    own_workdir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="sk8s-vm-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    overlay = work / "overlay.qcow2"
    seed = work / "seed.img"
    console_log = work / "console.log"
    qga_socket = work / "qga.sock"
    pidfile = work / "qemu.pid"
    known_hosts = write_known_hosts(work / "known_hosts", host_public_key)
    stderr_log = work / "qemu.stderr"
    vm: BootedVM | None = None
    try:
        create = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2"]
        create += ["-b", str(image.disk), str(overlay)]
        if disk_size:
            create.append(disk_size)
        subprocess.run(create, check=True, capture_output=True, timeout=120)
        make_seed(seed, user_data, meta_data, network_config)

        started = time.monotonic()
        for attempt in range(5):
            port = 22 if tap else free_loopback_port()
            argv = [*(tap.prefix if tap else ()), *qemu_argv(
                image,
                overlay=overlay,
                seed=seed,
                console_log=console_log,
                qga_socket=qga_socket,
                pidfile=pidfile,
                port=port,
                memory_mb=memory_mb,
                cpus=cpus,
                cpu_model=cpu_model,
                extra_kernel_args=extra_kernel_args,
                mac=mac,
                guest_agent_channel=guest_agent_channel,
                tap=tap.name if tap else None,
            )]
            with stderr_log.open("wb") as err:
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=work
                )
            vm = BootedVM(
                process=process,
                workdir=work,
                console_log=console_log,
                qga_socket=qga_socket,
                port=port,
                user=admin_user,
                private_key=private_key,
                known_hosts=known_hosts,
                host_key_type=host_public_key.split()[0],
                host=tap.address if tap else "127.0.0.1",
                prefix=tap.prefix if tap else (),
            )
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                break  # still running: it got the port
            message = stderr_log.read_text(errors="replace")
            if "hostfwd" not in message or attempt == 4:
                raise VMError(f"qemu exited at once (rc={process.returncode}):\n{message}")
            # lost a race for the port with another process: pick another one
        assert vm is not None
        vm.wait_for_ssh(timeout=max(30.0, boot_timeout - (time.monotonic() - started)))
        vm.boot_seconds = time.monotonic() - started
        yield vm
    finally:
        if vm is not None:
            vm.stop()
        for path in (overlay, seed, qga_socket, pidfile):
            path.unlink(missing_ok=True)
        if own_workdir:
            shutil.rmtree(work, ignore_errors=True)
