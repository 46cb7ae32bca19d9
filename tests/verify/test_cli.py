"""`python -m verify`: arguments, which kubeconfig, output (table and JSON) and exit status."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.verify.fake import FakeCluster, proof_log
from verify.__main__ import main
from verify.client import Connection, Target
from verify.report import JSON_SCHEMA

REPO = Path(__file__).resolve().parents[2]
SERVER = "https://10.17.0.10:6443"


def write_kubeconfig(path: Path, server: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", SERVER)


class Connector:
    """Stands in for verify.client.connect: records the target, serves a recorded cluster."""

    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        self.targets: list[tuple[Target, float]] = []

    def __call__(self, target: Target, timeout: float) -> Connection:
        self.targets.append((target, timeout))
        return Connection(FakeCluster(self.scenario), SERVER, "v1.34.2")


def run_main(scenario: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *argv: str,
             environ: dict[str, str] | None = None,
             home: Path | None = None) -> tuple[int, Connector]:
    monkeypatch.setattr(secrets, "token_hex", lambda n: "test")
    connector = Connector(scenario)
    code = main(list(argv), connector, environ or {}, home or Path("/nonexistent"))
    return code, connector


def test_healthy_cluster_exits_0(healthy: dict[str, Any], kubeconfig: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, connector = run_main(healthy, monkeypatch, "--kubeconfig", str(kubeconfig),
                               "--timeout", "90")
    assert code == 0
    assert connector.targets == [(Target(str(kubeconfig)), 90)]
    out = capsys.readouterr().out
    assert out.startswith("CHECK ")
    assert "25 checks: 25 PASS, 0 FAIL, 0 ERROR" in out


def test_a_failing_call_is_an_error_row_and_exits_1(healthy: dict[str, Any], kubeconfig: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    healthy["logs"][proof_log(healthy, "gvisor")] = {"error": "logs: 404 NotFound: gone"}
    code, _ = run_main(healthy, monkeypatch, "--kubeconfig", str(kubeconfig))
    assert code == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines()
                if ln.startswith("sandbox proof gvisor: kernel"))
    assert line.endswith("| ERROR") and "404 NotFound" in line


def test_json_output_schema(healthy: dict[str, Any], kubeconfig: Path,
                            monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    healthy["dry_run"]["verify-deny-privileged-test"] = None  # admitted: a FAIL row
    code, _ = run_main(healthy, monkeypatch, "--kubeconfig", str(kubeconfig), "-o", "json")
    assert code == 1
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["schema", "cluster", "error", "checks", "summary"]
    assert doc["schema"] == JSON_SCHEMA
    assert doc["cluster"] == {"server": SERVER, "version": "v1.34.2"}
    assert doc["error"] is None
    assert doc["summary"] == {"total": 25, "PASS": 24, "FAIL": 1, "ERROR": 0, "exitCode": 1}
    for check in doc["checks"]:
        assert list(check) == ["name", "expectation", "result", "detail", "apiStatus"]
        assert check["result"] in ("PASS", "FAIL", "ERROR")
        assert isinstance(check["detail"], str) and check["detail"]
    by_name = {c["name"]: c for c in doc["checks"]}
    assert len(by_name) == 25
    assert by_name["admission: deny privileged"]["result"] == "FAIL"
    host_pid = by_name["admission: deny hostPID"]
    assert host_pid["result"] == "PASS"
    assert host_pid["apiStatus"]["code"] == 403
    assert host_pid["apiStatus"]["reason"] == "Forbidden"
    assert "hostPID=true" in host_pid["apiStatus"]["message"]


def test_kubeconfig_precedence(healthy: dict[str, Any], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    flag = write_kubeconfig(tmp_path / "flag", SERVER)
    env_a = write_kubeconfig(tmp_path / "env-a", SERVER)
    env_b = write_kubeconfig(tmp_path / "env-b", SERVER)
    home = tmp_path / "home"
    default = write_kubeconfig(home / ".kube" / "config", SERVER)
    environ = {"KUBECONFIG": f"{env_a}:{tmp_path / 'missing'}:{env_b}"}

    def chosen(*argv: str, environ: dict[str, str]) -> Target:
        _, connector = run_main(healthy, monkeypatch, *argv, environ=environ, home=home)
        return connector.targets[0][0]

    assert chosen("--kubeconfig", str(flag), environ=environ) == Target(str(flag))
    # kubectl's list: every file that exists, merged in order; missing ones skipped.
    assert chosen(environ=environ) == Target(f"{env_a}:{env_b}")
    assert chosen("--context", "other", environ=environ) == Target(f"{env_a}:{env_b}", "other")
    assert chosen(environ={"KUBECONFIG": ""}) == Target(str(default))
    assert chosen(environ={}) == Target(str(default))
    capsys.readouterr()


def test_no_kubeconfig_anywhere_is_a_usage_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([], environ={}, home=tmp_path)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "no kubeconfig: pass --kubeconfig FILE, set KUBECONFIG, or write" in err
    with pytest.raises(SystemExit) as exited:
        main([], environ={"KUBECONFIG": str(tmp_path / "gone")}, home=tmp_path)
    assert exited.value.code == 2
    assert f"no file of KUBECONFIG={tmp_path / 'gone'} exists" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig /nonexistent/kubeconfig not found"),
    (["--kubeconfig", "{kc}", "--timeout", "0"], "must be at least 1 second"),
    (["--kubeconfig", "{kc}", "--timeout", "soon"], "is not a whole number"),
    (["--kubeconfig", "{kc}", "-o", "yaml"], "invalid choice: 'yaml'"),
    (["--kubeconfig", "{kc}", "--context", "nope"], "nope"),
])
def test_usage_errors_exit_2(argv: list[str], message: str, kubeconfig: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([a.format(kc=kubeconfig) for a in argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_kubeconfig_that_is_not_one_exits_2(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(SystemExit) as exited:
        main(["--kubeconfig", str(bad)])
    assert exited.value.code == 2
    assert f"kubeconfig {bad}: " in capsys.readouterr().err


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, held for the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def verify(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "verify", *argv], cwd=REPO, capture_output=True,
                          text=True, check=False, timeout=60, env=env)


def test_unreachable_cluster_is_one_line_and_exit_3(tmp_path: Path, closed_port: int) -> None:
    server = f"https://127.0.0.1:{closed_port}"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server)
    done = verify("--kubeconfig", str(kubeconfig), "--timeout", "5")
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr == (f"verify: cannot reach the API server {server}: connection refused "
                           f"(kubeconfig {kubeconfig})\n")


def test_unreachable_cluster_in_json(tmp_path: Path, closed_port: int) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"https://127.0.0.1:{closed_port}")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
    done = verify("-o", "json", env=env)
    assert done.returncode == 3
    assert len(done.stderr.splitlines()) == 1
    doc = json.loads(done.stdout)
    assert doc["error"].startswith("cannot reach the API server https://127.0.0.1:")
    assert doc["checks"] == []
    assert doc["summary"] == {"total": 0, "PASS": 0, "FAIL": 0, "ERROR": 0, "exitCode": 3}


def test_module_entry_point(tmp_path: Path) -> None:
    done = verify("--kubeconfig", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert "pulumi stack output kubeconfig --show-secrets" in done.stderr
