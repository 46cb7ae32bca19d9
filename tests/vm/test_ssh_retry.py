"""The VM harness tries an SSH command again only when the handshake never started."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.vm import ssh
from tests.vm.harness import BootedVM

RESET = b"kex_exchange_identification: read: Connection reset by peer\r\n"
REFUSED = b"ssh: connect to host 10.19.0.11 port 22: Connection refused\r\n"


class FakeVM:
    def ssh_command(self) -> list[str]:
        return ["ssh", "node"]


def run_with(monkeypatch: pytest.MonkeyPatch, answers: list[tuple[int, bytes]]) -> tuple[
        ssh.RunResult, int]:
    calls = 0

    def fake_run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[bytes]:
        nonlocal calls
        rc, stderr = answers[min(calls, len(answers) - 1)]
        calls += 1
        return subprocess.CompletedProcess(argv, rc, b"", stderr)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(ssh, "CONNECT_RETRY_DELAY_S", 0.0)
    result = BootedVM.run(FakeVM(), "true", check=False)  # type: ignore[arg-type]
    return result, calls


def test_a_reset_before_the_handshake_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    result, calls = run_with(monkeypatch, [(255, RESET), (255, RESET), (0, b"")])
    assert (result.rc, calls) == (0, 3)


def test_a_refused_connection_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # A guest on a bridge while cloud-init restarts its sshd.
    result, calls = run_with(monkeypatch, [(255, REFUSED), (0, b"")])
    assert (result.rc, calls) == (0, 2)


def test_other_ssh_failures_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    lost = b"Connection to node closed by remote host.\r\n"  # the command may have run
    result, calls = run_with(monkeypatch, [(255, lost), (0, b"")])
    assert (result.rc, calls) == (255, 1)


def test_retries_end(monkeypatch: pytest.MonkeyPatch) -> None:
    result, calls = run_with(monkeypatch, [(255, RESET)])
    assert (result.rc, calls) == (255, ssh.CONNECT_RETRIES + 1)
