"""How `verify` talks to the cluster: kubectl behind a small interface that tests replace.

Manifests go to kubectl on stdin and credentials stay in the kubeconfig file, so the argv holds
nothing secret. Anything kubectl itself could not do raises `KubeError`; an admission denial or
a non-zero exit inside a pod is an answer, not an error.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

Obj = dict[str, Any]
PodCondition = Literal["Ready", "Succeeded"]

# kubectl's rendering of an API error from admission: Forbidden is how PodSecurity, policies
# and the RuntimeClass plugin refuse a pod; the RuntimeClass plugin's lookup of an empty name
# fails with a reason-less "Error from server:". RBAC refusals are Forbidden too, but they are
# not an answer. Which control refused is for the caller to judge from the message.
_ADMISSION_DENIAL = re.compile(r"Error from server( \(Forbidden\))?:")
_RBAC_DENIAL = "cannot create resource"
# Printed by kubectl when the command inside the container exits non-zero.
_REMOTE_EXIT = re.compile(r"command terminated with exit code (\d+)")
_KLOG_LINE = re.compile(r"^[IWEF]\d{4} ")
_WAIT_FOR: dict[str, str] = {
    "Ready": "--for=condition=Ready",
    "Succeeded": "--for=jsonpath={.status.phase}=Succeeded",
}


class KubeError(Exception):
    """kubectl failed or timed out: the check that needed it could not run."""


@dataclass(frozen=True)
class Completed:
    rc: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], str | None, float], Completed]


class Cluster(Protocol):
    def get_json(self, resource: str, name: str | None = None, namespace: str | None = None,
                 selector: str | None = None) -> Obj:
        """One object, or a List (`items`) when name is None."""
        ...

    def create(self, manifest: Obj) -> Obj: ...

    def dry_run_create(self, manifest: Obj) -> tuple[bool, str]:
        """Server-side dry run: (True, "") if admitted, (False, message) if admission denied."""
        ...

    def delete(self, resource: str, name: str, namespace: str) -> None: ...

    def logs(self, pod: str, namespace: str) -> str: ...

    def exec(self, pod: str, namespace: str, command: Sequence[str]) -> tuple[int, str, str]:
        """The command's (exit code, stdout, stderr) inside the pod's first container."""
        ...

    def wait_pod(self, pod: str, namespace: str, condition: PodCondition,
                 timeout: float) -> None: ...


def run_subprocess(argv: Sequence[str], stdin: str | None, timeout: float) -> Completed:
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise KubeError(f"{argv[0]} {argv[3] if len(argv) > 3 else ''} timed out after "
                        f"{timeout:g}s") from None
    except OSError as e:
        raise KubeError(f"cannot run {argv[0]}: {e}") from None
    return Completed(done.returncode, done.stdout, done.stderr)


def error_text(stderr: str) -> str:
    """kubectl's message on one line, without client-go's klog noise."""
    lines = [ln.strip() for ln in stderr.splitlines()
             if ln.strip() and not _KLOG_LINE.match(ln)]
    return " ".join(lines)


class Kubectl:
    """`Cluster` through the kubectl binary, always with an explicit --kubeconfig."""

    def __init__(self, kubeconfig: Path, timeout: float, kubectl: str = "kubectl",
                 runner: Runner = run_subprocess) -> None:
        self.kubeconfig = kubeconfig
        self.timeout = timeout
        self.kubectl = kubectl
        self.runner = runner

    def _run(self, args: Sequence[str], stdin: str | None = None,
             timeout: float | None = None) -> Completed:
        argv = [self.kubectl, "--kubeconfig", str(self.kubeconfig), *args]
        return self.runner(argv, stdin, self.timeout if timeout is None else timeout)

    def _checked(self, args: Sequence[str], stdin: str | None = None,
                 timeout: float | None = None) -> str:
        done = self._run(args, stdin, timeout)
        if done.rc != 0:
            raise KubeError(f"kubectl {' '.join(args[:2])}: "
                            f"{error_text(done.stderr) or f'exit code {done.rc}'}")
        return done.stdout

    @staticmethod
    def _parse(text: str, what: str) -> Obj:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise KubeError(f"kubectl {what}: output is not JSON ({e})") from None
        if not isinstance(value, dict):
            raise KubeError(f"kubectl {what}: expected a JSON object")
        return value

    def get_json(self, resource: str, name: str | None = None, namespace: str | None = None,
                 selector: str | None = None) -> Obj:
        args = ["get", resource, *([name] if name else []),
                *(["-n", namespace] if namespace else []),
                *(["-l", selector] if selector else []), "-o", "json"]
        return self._parse(self._checked(args), f"get {resource}")

    def create(self, manifest: Obj) -> Obj:
        out = self._checked(["create", "-f", "-", "-o", "json"], json.dumps(manifest))
        return self._parse(out, "create")

    def dry_run_create(self, manifest: Obj) -> tuple[bool, str]:
        done = self._run(["create", "--dry-run=server", "-f", "-", "-o", "json"],
                         json.dumps(manifest))
        if done.rc == 0:
            return True, ""
        message = error_text(done.stderr)
        if _ADMISSION_DENIAL.search(message) and _RBAC_DENIAL not in message:
            return False, message
        raise KubeError(f"kubectl create --dry-run=server: {message or f'exit code {done.rc}'}")

    def delete(self, resource: str, name: str, namespace: str) -> None:
        self._checked(["delete", resource, name, "-n", namespace, "--ignore-not-found",
                       "--wait=false"])

    def logs(self, pod: str, namespace: str) -> str:
        return self._checked(["logs", pod, "-n", namespace])

    def exec(self, pod: str, namespace: str, command: Sequence[str]) -> tuple[int, str, str]:
        done = self._run(["exec", pod, "-n", namespace, "--", *command])
        remote = _REMOTE_EXIT.search(done.stderr)
        if done.rc != 0 and remote is None:
            raise KubeError(f"kubectl exec {pod}: "
                            f"{error_text(done.stderr) or f'exit code {done.rc}'}")
        return done.rc, done.stdout, done.stderr

    def wait_pod(self, pod: str, namespace: str, condition: PodCondition,
                 timeout: float) -> None:
        self._checked(["wait", f"pod/{pod}", "-n", namespace, _WAIT_FOR[condition],
                       f"--timeout={int(timeout)}s"], timeout=timeout + 15)
