"""SSH to a test guest with its host key pinned, and cloud-init's status read over it.

SSH always pins the guest's host key: a known_hosts file holding only the expected key under a
fixed alias, ``StrictHostKeyChecking=yes``, no global known_hosts, no ssh config, no agent.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import socket
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# Host-key alias used in known_hosts, so the entry does not depend on the forwarded port.
HOST_KEY_ALIAS = "sandboxed-k8s-test-vm"

# TCG on two shared cores is slow: these are generous but bounded.
CLOUD_INIT_TIMEOUT_S = 1500.0
RUN_TIMEOUT_S = 900.0
SSH_CONNECT_TIMEOUT_S = 30


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
            f"--- stdout (tail) ---\n{tail(result.stdout)}\n"
            f"--- stderr (tail) ---\n{tail(result.stderr)}"
        )


class RunResult(NamedTuple):
    """Result of a remote command; unpacks as ``rc, stdout, stderr``."""

    rc: int
    stdout: str
    stderr: str


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


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


CONNECT_RETRIES = 10
CONNECT_RETRY_DELAY_S = 3.0


def host_key_failure(stderr: str) -> bool:
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
            if result.rc == 255 and host_key_failure(result.stderr):
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
            self.run(shell(script, sudo), stdin=buf.getvalue(), timeout=timeout)
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
        result = self.run(shell(script, sudo), stdin=data, timeout=timeout)
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
            f"--- cloud-init.log warnings/errors (tail) ---\n{tail(self.log_problems, 60)}"
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


def shell(script: str, sudo: bool) -> str:
    return f"{'sudo -n ' if sudo else ''}sh -c {shlex.quote(script)}"
