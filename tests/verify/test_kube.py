"""The kubectl wrapper: the argv it builds, what it sends on stdin, how it reads answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from verify.kube import Completed, Kubectl, KubeError, run_subprocess

SECRET = "s3cr3t-bearer-token"
FORBIDDEN = ('Error from server (Forbidden): error when creating "STDIN": pods "p" is forbidden: '
             'violates PodSecurity "restricted:v1.34": host namespaces (hostPID=true)')
KLOG = 'E1128 19:56:23.076854   26981 memcache.go:265] "Unhandled Error" err="couldn\'t get"\n'


class Recorder:
    """Stands in for subprocess: records each call and answers from a queue."""

    def __init__(self, *answers: Completed) -> None:
        self.answers = list(answers) or [Completed(0, "{}", "")]
        self.calls: list[tuple[list[str], str | None, float]] = []

    def __call__(self, argv: Sequence[str], stdin: str | None, timeout: float) -> Completed:
        self.calls.append((list(argv), stdin, timeout))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    @property
    def argv(self) -> list[str]:
        return self.calls[-1][0]


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\n"
                    f"users: [{{name: a, user: {{token: {SECRET}}}}}]\n")
    return path


def kubectl(kubeconfig: Path, *answers: Completed) -> tuple[Kubectl, Recorder]:
    recorder = Recorder(*answers)
    return Kubectl(kubeconfig, timeout=30, runner=recorder), recorder


def test_get_json_argv(kubeconfig: Path) -> None:
    k, rec = kubectl(kubeconfig, Completed(0, '{"items": []}', ""))
    assert k.get_json("pods", namespace="sandbox-proof", selector="a=b") == {"items": []}
    assert rec.argv == ["kubectl", "--kubeconfig", str(kubeconfig), "get", "pods",
                        "-n", "sandbox-proof", "-l", "a=b", "-o", "json"]
    k.get_json("nodes", "worker1")
    assert rec.argv[3:] == ["get", "nodes", "worker1", "-o", "json"]
    assert rec.calls[-1][2] == 30


def test_dry_run_is_server_side_with_the_manifest_on_stdin(kubeconfig: Path) -> None:
    k, rec = kubectl(kubeconfig, Completed(0, "{}", ""))
    manifest = {"kind": "Pod", "metadata": {"name": "p", "namespace": "t"}}
    assert k.dry_run_create(manifest) == (True, "")
    argv, stdin, _ = rec.calls[-1]
    assert argv[3:] == ["create", "--dry-run=server", "-f", "-", "-o", "json"]
    assert stdin is not None and json.loads(stdin) == manifest


def test_dry_run_denial_is_an_answer(kubeconfig: Path) -> None:
    k, _ = kubectl(kubeconfig, Completed(1, "", KLOG + FORBIDDEN + "\n"))
    assert k.dry_run_create({}) == (False, FORBIDDEN)


def test_reasonless_admission_error_is_an_answer(kubeconfig: Path) -> None:
    # kube-apiserver 1.34's RuntimeClass plugin, for runtimeClassName "" (recorded for real)
    empty = 'Error from server: error when creating "STDIN": resource name may not be empty'
    k, _ = kubectl(kubeconfig, Completed(1, "", empty + "\n"))
    assert k.dry_run_create({}) == (False, empty)


@pytest.mark.parametrize("stderr", [
    "The connection to the server 10.17.0.10:6443 was refused - did you specify the right host?",
    'Error from server (Forbidden): pods is forbidden: User "x" cannot create resource "pods"',
    "error: You must be logged in to the server (Unauthorized)",
    'Error from server (Invalid): Pod "p" is invalid: spec.containers: Required value',
])
def test_dry_run_failure_that_is_not_admission_raises(kubeconfig: Path, stderr: str) -> None:
    k, _ = kubectl(kubeconfig, Completed(1, "", stderr))
    with pytest.raises(KubeError):
        k.dry_run_create({})


def test_no_secret_ever_reaches_argv(kubeconfig: Path) -> None:
    k, rec = kubectl(kubeconfig, Completed(0, "{}", ""))
    manifest = {"kind": "Pod", "metadata": {"name": "p", "namespace": "t",
                                            "annotations": {"x": SECRET}}}
    k.get_json("pods")
    k.create(manifest)
    k.dry_run_create(manifest)
    k.delete("pod", "p", "t")
    k.logs("p", "t")
    k.exec("p", "t", ["ls", "/"])
    k.wait_pod("p", "t", "Ready", 30)
    for argv, _, _ in rec.calls:
        assert argv[:3] == ["kubectl", "--kubeconfig", str(kubeconfig)]
        assert not any(SECRET in a for a in argv)
        assert not any(a.startswith(("--token", "--password", "--username", "--client-key",
                                     "--client-certificate")) for a in argv)


def test_delete_logs_wait_argv(kubeconfig: Path) -> None:
    k, rec = kubectl(kubeconfig)
    k.delete("pod", "p", "t")
    assert rec.argv[3:] == ["delete", "pod", "p", "-n", "t", "--ignore-not-found", "--wait=false"]
    k.logs("p", "t")
    assert rec.argv[3:] == ["logs", "p", "-n", "t"]
    k.wait_pod("p", "t", "Ready", 45)
    assert rec.argv[3:] == ["wait", "pod/p", "-n", "t", "--for=condition=Ready", "--timeout=45s"]
    assert rec.calls[-1][2] > 45
    k.wait_pod("p", "t", "Succeeded", 45)
    assert rec.argv[7] == "--for=jsonpath={.status.phase}=Succeeded"


def test_exec_returns_the_remote_exit_code(kubeconfig: Path) -> None:
    stderr = "ls: /x: No such file or directory\ncommand terminated with exit code 1\n"
    k, rec = kubectl(kubeconfig, Completed(1, "", stderr))
    assert k.exec("p", "t", ["ls", "/x"]) == (1, "", stderr)
    assert rec.argv[3:] == ["exec", "p", "-n", "t", "--", "ls", "/x"]


def test_exec_failure_of_kubectl_raises(kubeconfig: Path) -> None:
    k, _ = kubectl(kubeconfig, Completed(1, "", "error: unable to upgrade connection: pod not "
                                                "found"))
    with pytest.raises(KubeError, match="unable to upgrade connection"):
        k.exec("p", "t", ["true"])


def test_errors_drop_klog_noise(kubeconfig: Path) -> None:
    k, _ = kubectl(kubeconfig, Completed(1, "", KLOG + "The connection to the server was "
                                                "refused\n"))
    with pytest.raises(KubeError) as raised:
        k.logs("p", "t")
    assert str(raised.value) == "kubectl logs p: The connection to the server was refused"


def test_non_json_output_raises(kubeconfig: Path) -> None:
    k, _ = kubectl(kubeconfig, Completed(0, "not json", ""))
    with pytest.raises(KubeError, match="not JSON"):
        k.get_json("nodes")


def test_run_subprocess_timeout_and_missing_binary() -> None:
    assert run_subprocess(["sh", "-c", "cat; echo err >&2"], "in", 5) == Completed(0, "in",
                                                                                   "err\n")
    with pytest.raises(KubeError, match="timed out"):
        run_subprocess(["sleep", "5"], None, 0.2)
    with pytest.raises(KubeError, match="cannot run"):
        run_subprocess(["/nonexistent/kubectl"], None, 1)
