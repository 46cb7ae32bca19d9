"""Boot the cached Debian 12 test image under qemu (TCG) with a NoCloud seed, talk over SSH.

Only loopback is used on the host: qemu's user-mode network forwards 127.0.0.1:PORT to the
guest's port 22. The guest reaches Debian's mirror through the same user-mode NAT (cloud-init's
``packages``), never anything on the host's own networks.

SSH (tests/vm/ssh.py) always pins the guest's host key.

Typical use::

    image = ensure_image()
    with boot_vm(image, user_data, admin_user="ops", private_key=key,
                 host_public_key=host_pub) as vm:
        vm.wait_cloud_init()
        rc, out, err = vm.run("sudo -n true")
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.vm.ssh import (
    HostKeyVerificationFailed,
    RunResult,
    SSHClient,
    VMError,
    free_loopback_port,
    host_key_failure,
    tail,
    write_known_hosts,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "build-test-vm-image.sh"

DEFAULT_NETWORK_CONFIG = """\
version: 2
ethernets:
  eth0:
    dhcp4: true
"""

# TCG on two shared cores is slow: these are generous but bounded.
IMAGE_BUILD_TIMEOUT_S = 3600.0
BOOT_TIMEOUT_S = 900.0
QEMU_STOP_TIMEOUT_S = 20.0


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
        raise VMError(f"{BUILD_SCRIPT} failed with rc={proc.returncode}\n{tail(proc.stderr, 60)}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise VMError(f"{BUILD_SCRIPT} printed no image directory\n{tail(proc.stderr)}")
    image = VMImage(Path(lines[-1]))
    for path in (image.disk, image.kernel, image.initrd):
        if not path.is_file():
            raise VMError(f"image file missing: {path}")
    return image


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

    def consoletail(self, lines: int = 60) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return tail(text, lines)

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
                    f"--- console (tail) ---\n{self.consoletail()}"
                )
            remaining = max(5.0, deadline - time.monotonic())
            try:
                last = self.run("true", check=False, timeout=min(90.0, remaining))
            except VMError as exc:  # a single hung attempt; try again
                last = RunResult(-1, "", str(exc))
            if last.rc == 0:
                return time.monotonic() - start
            if last.rc == 255 and host_key_failure(last.stderr):
                # sshd only starts after cloud-init installed the keys, so a mismatch is
                # final: fail closed at once instead of retrying until the deadline.
                raise HostKeyVerificationFailed(
                    f"guest presented a host key other than the pinned one:\n{last.stderr}"
                )
            time.sleep(3)
        raise VMError(
            f"SSH not ready after {timeout:.0f}s; last ssh rc={last.rc}: {last.stderr.strip()}\n"
            f"--- console (tail) ---\n{self.consoletail()}"
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
            f"--- console (tail) ---\n{self.consoletail()}"
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
