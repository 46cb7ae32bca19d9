"""A real control plane on 127.0.0.1: etcd, kube-apiserver and kube-controller-manager as
processes, with a test CA, and kubectl against it (as the admin or impersonating a tenant).

The API server gets kubeadm's own defaults plus the flags and files the program's kubeadm
configuration adds (tests/apiserver/program.py takes them from the graph); only what needs a
real node (etcd TLS, kubelet client, front proxy) is left out.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 120.0
KUBECTL_TIMEOUT_S = 60.0

# kubeadm v1.34's own API-server defaults that decide admission and authorization
# (cmd/kubeadm/app/phases/controlplane/manifests.go, getAPIServerCommand); the program's
# extraArgs are applied over them, as kubeadm does.
KUBEADM_APISERVER_DEFAULTS = {
    "enable-admission-plugins": "NodeRestriction",
    "authorization-mode": "Node,RBAC",
    "allow-privileged": "true",
    "enable-bootstrap-token-auth": "true",
    "service-account-issuer": "https://kubernetes.default.svc.cluster.local",
}


class ControlPlaneError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args[:2])}: {proc.stderr}")


@dataclass(frozen=True)
class TestPki:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    def cert(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    @classmethod
    def create(cls, directory: Path) -> TestPki:
        directory.mkdir(parents=True, exist_ok=True)
        d = directory
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
        pki = cls(directory)
        pki._issue("apiserver", "/CN=kube-apiserver", "subjectAltName=IP:127.0.0.1,DNS:localhost")
        pki._issue("admin", "/O=system:masters/CN=kubernetes-admin", None)
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
        return pki

    def _issue(self, name: str, subject: str, extension: str | None) -> None:
        d = self.directory
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(f"{extension}\n" if extension else "")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                 "-out", f"{name}.crt", cwd=d)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(name: str, argv: Sequence[str], workdir: Path) -> Process:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=workdir)
    return Process(name, popen, log)


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None, as_user: str | None = None,
            groups: Sequence[str] = (), check: bool = True,
            timeout: float = KUBECTL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig)]
        if as_user is not None:
            argv += ["--as", as_user, *(f"--as-group={g}" for g in groups)]
        proc = subprocess.run([*argv, *args], input=stdin, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def get(self, *args: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.run("get", *args, "-o", "json").stdout)
        return value


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) under `workdir`; stop() ends them."""

    bins: Mapping[str, Path]
    workdir: Path
    apiserver_args: Mapping[str, str]
    etcd_url: str = ""
    url: str = ""
    pki: TestPki | None = None
    processes: list[Process] = field(default_factory=list)
    started_seconds: float = 0.0

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.conf"

    @property
    def kubectl(self) -> Kubectl:
        return Kubectl(self.bins["kubectl"], self.kubeconfig)

    def start(self, controller_manager: bool = True) -> None:
        begin = time.monotonic()
        self.pki = pki = TestPki.create(self.workdir / "pki")
        client, peer, secure = free_port(), free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self.url = f"https://127.0.0.1:{secure}"
        self.processes.append(start("etcd", [
            str(self.bins["etcd"]), "--name=test", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=test=http://127.0.0.1:{peer}",
            "--log-level=warn"], self.workdir))
        self._wait("etcd", lambda: self._http_ok(f"{self.etcd_url}/health"))
        cert, key = pki.cert("apiserver")
        args = {
            **KUBEADM_APISERVER_DEFAULTS,
            "advertise-address": "127.0.0.1",
            "bind-address": "127.0.0.1",
            "secure-port": str(secure),
            "etcd-servers": self.etcd_url,
            "client-ca-file": str(pki.ca),
            "tls-cert-file": str(cert),
            "tls-private-key-file": str(key),
            "service-account-key-file": str(pki.sa_pub),
            "service-account-signing-key-file": str(pki.sa_key),
            **self.apiserver_args,
        }
        self.processes.append(start("kube-apiserver", [
            str(self.bins["kube-apiserver"]), *(f"--{k}={v}" for k, v in args.items())],
            self.workdir))
        self._write_kubeconfig()
        self._wait("kube-apiserver", lambda: self.kubectl.run(
            "get", "--raw=/readyz", check=False, timeout=10).returncode == 0)
        if controller_manager:
            self.processes.append(start("kube-controller-manager", [
                str(self.bins["kube-controller-manager"]), f"--kubeconfig={self.kubeconfig}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca}", "--leader-elect=false", "--secure-port=0",
                "--controllers=*", "--concurrent-replicaset-syncs=2"], self.workdir))
            self._wait("kube-controller-manager default service account",
                       lambda: self.kubectl.run("get", "serviceaccount", "default",
                                                "-n", "default", check=False,
                                                timeout=10).returncode == 0)
        self.started_seconds = time.monotonic() - begin

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def _write_kubeconfig(self) -> None:
        assert self.pki is not None
        cert, key = self.pki.cert("admin")

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url, "certificate-authority-data": b64(self.pki.ca)}}],
            "users": [{"name": "admin", "user": {"client-certificate-data": b64(cert),
                                                 "client-key-data": b64(key)}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        }))

    def _wait(self, what: str, ready: Callable[[], bool],
              timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.popen.poll() is not None:
                    raise ControlPlaneError(f"{process.name} exited "
                                            f"({process.popen.returncode}):\n{process.tail()}")
            with suppress(OSError, subprocess.TimeoutExpired):
                if ready():
                    return
            time.sleep(0.5)
        logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.processes)
        raise ControlPlaneError(f"{what} not ready after {timeout:.0f}s\n{logs}")

    @staticmethod
    def _http_ok(url: str) -> bool:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)

    def etcd_value(self, key: str) -> bytes | None:
        """The raw value etcd stores under `key` (e.g. /registry/secrets/<ns>/<name>)."""
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
        request = urllib.request.Request(f"{self.etcd_url}/v3/kv/range", data=body,
                                         method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        kvs = answer.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]) if kvs else None
