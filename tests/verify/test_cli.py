"""`python -m verify`: arguments, output and exit status."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.verify.fake import FakeCluster, proof_log
from verify.__main__ import main
from verify.kube import Cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\n")
    return path


def run_main(scenario: dict[str, Any], kubeconfig: Path, monkeypatch: pytest.MonkeyPatch,
             *extra: str) -> tuple[int, list[tuple[Path, float, str]]]:
    monkeypatch.setattr(secrets, "token_hex", lambda n: "test")
    seen: list[tuple[Path, float, str]] = []

    def connect(path: Path, timeout: float, kubectl: str) -> Cluster:
        seen.append((path, timeout, kubectl))
        return FakeCluster(scenario)

    return main(["--kubeconfig", str(kubeconfig), *extra], connect), seen


def test_healthy_cluster_exits_0(healthy: dict[str, Any], kubeconfig: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, seen = run_main(healthy, kubeconfig, monkeypatch, "--timeout", "90")
    assert code == 0
    assert seen == [(kubeconfig, 90, "kubectl")]
    out = capsys.readouterr().out
    assert out.startswith("CHECK ")
    assert "25 checks: 25 PASS, 0 FAIL, 0 ERROR" in out


def test_kubectl_failing_for_logs_exits_1(healthy: dict[str, Any], kubeconfig: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    healthy["logs"][proof_log(healthy, "gvisor")] = {
        "error": "kubectl logs: Unable to connect to the server"}
    code, _ = run_main(healthy, kubeconfig, monkeypatch)
    assert code == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines()
                if ln.startswith("sandbox proof gvisor: kernel"))
    assert line.endswith("| ERROR") and "Unable to connect" in line


@pytest.mark.parametrize("argv, message", [
    (["--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig /nonexistent/kubeconfig not found"),
    ([], "the following arguments are required: --kubeconfig"),
    (["--kubeconfig", "{kc}", "--timeout", "0"], "must be at least 1 second"),
    (["--kubeconfig", "{kc}", "--timeout", "soon"], "is not a whole number"),
    (["--kubeconfig", "{kc}", "--kubectl", "/nonexistent/kubectl"], "not found"),
])
def test_usage_errors_exit_2(argv: list[str], message: str, kubeconfig: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([a.format(kc=kubeconfig) for a in argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "verify", "--kubeconfig",
                           str(tmp_path / "missing")], cwd=REPO, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2
    assert "pulumi stack output kubeconfig --show-secrets" in done.stderr
