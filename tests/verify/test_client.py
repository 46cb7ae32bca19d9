"""verify's `Cluster` on the Kubernetes Python client: the requests it makes, how it reads the
server's Status, exec through the stream API, waiting, and when the server is gone."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.verify.fakeapi import TOKEN, FakeApiServer, status
from verify.client import KubeClient, Target, connect, exit_status, pod_state
from verify.kube import ApiStatus, KubeError, Unreachable

PODS = "/api/v1/namespaces/t/pods"
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "t"},
       "spec": {"runtimeClassName": "gvisor", "containers": [{"name": "main", "image": "x"}]}}
PSA = ('pods "p" is forbidden: violates PodSecurity "restricted:v1.34": host namespaces '
       "(hostPID=true)")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeApiServer]:
    with FakeApiServer().running() as server:
        yield server


@pytest.fixture
def kube(fake: FakeApiServer, tmp_path: Path) -> KubeClient:
    cluster = connect(Target(str(fake.kubeconfig(tmp_path / "kubeconfig"))), 5).cluster
    assert isinstance(cluster, KubeClient)
    return cluster


def test_connect_asks_for_the_version_with_the_kubeconfigs_credentials(
        fake: FakeApiServer, tmp_path: Path) -> None:
    connection = connect(Target(str(fake.kubeconfig(tmp_path / "kc"))), 5)
    assert (connection.server, connection.version) == (fake.url, "v1.34.2")
    assert fake.last("GET", "/version/").authorization == f"Bearer {TOKEN}"


def test_get_json_reads_what_the_api_serves(kube: KubeClient, fake: FakeApiServer) -> None:
    listing = {"kind": "PodList", "items": [{"metadata": {"name": "p"},
                                             "status": {"podIP": "10.244.1.2"}}]}
    fake.answer("GET", "/api/v1/namespaces/sandbox-proof/pods", (200, listing))
    assert kube.get_json("pods", namespace="sandbox-proof", selector="a=b") == listing
    assert fake.last("GET", "/api/v1/namespaces/sandbox-proof/pods").query == {
        "labelSelector": ["a=b"]}
    fake.answer("GET", "/apis/node.k8s.io/v1/runtimeclasses", (200, {"items": []}))
    fake.answer("GET", "/api/v1/namespaces", (200, {"items": []}))
    fake.answer("GET", "/api/v1/nodes/worker1", (200, {"metadata": {"name": "worker1"}}))
    fake.answer("GET", f"{PODS}/p", (200, POD))
    assert kube.get_json("runtimeclasses") == {"items": []}
    assert kube.get_json("namespaces", selector="sandboxed-k8s.io/tenant=true") == {"items": []}
    assert fake.last("GET", "/api/v1/namespaces").query == {
        "labelSelector": ["sandboxed-k8s.io/tenant=true"]}
    assert kube.get_json("nodes", "worker1") == {"metadata": {"name": "worker1"}}
    assert kube.get_json("pods", "p", "t") == POD
    with pytest.raises(ValueError, match="does not read secrets"):
        kube.get_json("secrets", namespace="t")


def test_an_api_error_carries_the_servers_status(kube: KubeClient, fake: FakeApiServer) -> None:
    with pytest.raises(KubeError) as raised:
        kube.get_json("nodes", "gone")
    assert raised.value.status == ApiStatus(404, "NotFound", "/api/v1/nodes/gone not found")
    assert str(raised.value) == "get nodes gone: 404 NotFound: /api/v1/nodes/gone not found"


def test_an_error_without_a_status_keeps_the_http_answer(kube: KubeClient,
                                                         fake: FakeApiServer) -> None:
    fake.answer("GET", "/api/v1/nodes/n", (502, "<html>Bad Gateway</html>"))
    with pytest.raises(KubeError) as raised:
        kube.get_json("nodes", "n")
    assert raised.value.status is not None
    assert raised.value.status.code == 502
    assert "Bad Gateway" in raised.value.status.message


def test_create_and_dry_run_post_the_manifest(kube: KubeClient, fake: FakeApiServer) -> None:
    fake.answer("POST", PODS, (201, POD))
    assert kube.create(POD) == POD
    assert fake.last("POST", PODS).body == POD
    assert fake.last("POST", PODS).query == {}
    assert kube.dry_run_create(POD) is None
    assert fake.last("POST", PODS).query == {"dryRun": ["All"]}
    assert fake.last("POST", PODS).body == POD


@pytest.mark.parametrize("refusal", [
    status(403, "Forbidden", PSA),
    status(403, "Forbidden", "pods \"p\" is forbidden: ValidatingAdmissionPolicy "
                             "'sandboxed-k8s-tenant-pods' with binding "
                             "'sandboxed-k8s-tenant-pods' denied request: no"),
    # The RuntimeClass plugin's lookup of an empty name: no reason, code 500.
    {**status(500, "", "resource name may not be empty"), "reason": None},
])
def test_an_admission_refusal_is_an_answer(kube: KubeClient, fake: FakeApiServer,
                                           refusal: dict[str, Any]) -> None:
    fake.answer("POST", PODS, (refusal["code"], refusal))
    assert kube.dry_run_create(POD) == ApiStatus(refusal["code"], refusal["reason"] or "",
                                                 refusal["message"])


@pytest.mark.parametrize("refusal", [
    status(403, "Forbidden", 'pods is forbidden: User "x" cannot create resource "pods" in '
                             'API group "" in the namespace "t"'),
    status(422, "Invalid", 'Pod "p" is invalid: spec.containers: Required value'),
    status(500, "InternalError", "etcdserver: request timed out"),
])
def test_a_refusal_that_is_not_admission_raises(kube: KubeClient, fake: FakeApiServer,
                                                refusal: dict[str, Any]) -> None:
    fake.answer("POST", PODS, (refusal["code"], refusal))
    with pytest.raises(KubeError) as raised:
        kube.dry_run_create(POD)
    assert raised.value.status == ApiStatus(refusal["code"], refusal["reason"],
                                            refusal["message"])


def test_delete_ignores_a_pod_already_gone(kube: KubeClient, fake: FakeApiServer) -> None:
    kube.delete("pod", "p", "t")
    assert fake.last("DELETE", f"{PODS}/p")
    fake.answer("DELETE", f"{PODS}/p", (403, status(403, "Forbidden", "no")))
    with pytest.raises(KubeError, match="403 Forbidden"):
        kube.delete("pod", "p", "t")


def test_logs_are_text(kube: KubeClient, fake: FakeApiServer) -> None:
    fake.answer("GET", f"{PODS}/p/log", (200, "kernel-release: 4.4.0\nStarting gVisor...\n"))
    assert kube.logs("p", "t") == "kernel-release: 4.4.0\nStarting gVisor...\n"


def _pod(phase: str, ready: bool = False, extra: dict[str, Any] | None = None
         ) -> tuple[int, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return 200, {**POD, "status": {"phase": phase, "conditions": conditions, **(extra or {})}}


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def paced(kube: KubeClient) -> tuple[KubeClient, FakeTime]:
    time = FakeTime()
    return KubeClient(kube.api, kube.timeout, clock=time.clock, sleep=time.sleep), time


def test_wait_pod_polls_until_the_condition(kube: KubeClient, fake: FakeApiServer) -> None:
    kube, time = paced(kube)
    fake.answer("GET", f"{PODS}/p", _pod("Pending"), _pod("Running"), _pod("Running", True))
    kube.wait_pod("p", "t", "Ready", 30)
    assert time.slept == [1.0, 1.0]
    fake.answer("GET", f"{PODS}/p", _pod("Running"), _pod("Succeeded"))
    kube.wait_pod("p", "t", "Succeeded", 30)


def test_wait_pod_stops_at_a_pod_that_ended(kube: KubeClient, fake: FakeApiServer) -> None:
    kube, time = paced(kube)
    fake.answer("GET", f"{PODS}/p", _pod("Failed"))
    with pytest.raises(KubeError, match=r"pod t/p ended \(Failed\) before it was Succeeded"):
        kube.wait_pod("p", "t", "Succeeded", 30)
    assert time.slept == []


def test_wait_pod_timeout_says_why(kube: KubeClient, fake: FakeApiServer) -> None:
    kube, time = paced(kube)
    waiting = {"containerStatuses": [{"name": "main", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}
    fake.answer("GET", f"{PODS}/p", _pod("Pending", extra=waiting))
    with pytest.raises(KubeError) as raised:
        kube.wait_pod("p", "t", "Ready", 5)
    assert str(raised.value) == ("pod t/p not Ready after 5s: Pending; main: ImagePullBackOff "
                                 "Back-off pulling image")
    assert time.now == 5


def test_pod_state_names_the_scheduling_problem() -> None:
    pod = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}]}}
    assert pod_state(pod) == "Pending; unschedulable: 0/3 nodes are available"


# -- exec ----------------------------------------------------------------------------------


class FakeStream:
    """What `kubernetes.stream.stream(..., _preload_content=False)` returns: a WSClient."""

    def __init__(self, channels: dict[int, str], still_open: bool = False) -> None:
        self.channels = channels
        self.still_open = still_open
        self.ran: list[float | None] = []
        self.closed = False

    def run_forever(self, timeout: float | None = None) -> None:
        self.ran.append(timeout)

    def is_open(self) -> bool:
        return self.still_open

    def read_channel(self, channel: int, timeout: float = 0) -> str:
        return self.channels.pop(channel, "")

    def close(self) -> None:
        self.closed = True


SUCCESS = json.dumps({"metadata": {}, "status": "Success"})
EXIT_1 = json.dumps({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                     "message": "command terminated with non-zero exit code: exit status 1",
                     "details": {"causes": [{"reason": "ExitCode", "message": "1"}]}})


class Streamer:
    def __init__(self, answer: FakeStream | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, method: Any, *args: Any, **kwargs: Any) -> FakeStream:
        self.calls.append((method.__name__, args, kwargs))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def exec_client(answer: FakeStream | Exception) -> tuple[KubeClient, Streamer]:
    streamer = Streamer(answer)
    api = client.ApiClient(client.Configuration(host="https://10.17.0.10:6443"))
    return KubeClient(api, 30, stream=streamer), streamer


def test_exec_goes_through_the_stream_api() -> None:
    ws = FakeStream({1: "out\n", 2: "", 3: SUCCESS})
    kube, streamer = exec_client(ws)
    assert kube.exec("p", "t", ["ls", "/x y"]) == (0, "out\n", "")
    ((method, args, kwargs),) = streamer.calls
    assert method == "connect_get_namespaced_pod_exec"
    assert args == ("p", "t")
    assert kwargs == {"command": ["ls", "/x y"], "stderr": True, "stdin": False, "stdout": True,
                      "tty": False, "_preload_content": False}
    assert ws.ran == [30] and ws.closed


def test_exec_over_a_real_websocket(kube: KubeClient, fake: FakeApiServer) -> None:
    """The client's own stream helper against a websocket speaking the exec protocol."""
    fake.streams[f"{PODS}/p/exec"] = [(1, "sandboxed"), (2, "wget: "), (1, "-k8s\n"),
                                      (2, "download timed out\n"), (3, EXIT_1)]
    assert kube.exec("p", "t", ["timeout", "10", "wget", "http://10.244.2.7:8080/"]) == (
        1, "sandboxed-k8s\n", "wget: download timed out\n")
    request = fake.last("GET", f"{PODS}/p/exec")
    assert request.query["command"] == ["timeout", "10", "wget", "http://10.244.2.7:8080/"]
    assert request.query["stdout"] == ["True"] and request.query["stderr"] == ["True"]
    assert request.query["stdin"] == ["False"] and request.query["tty"] == ["False"]
    assert request.authorization == f"Bearer {TOKEN}"
    fake.streams[f"{PODS}/p/exec"] = [(1, "ca.crt\n"), (3, SUCCESS)]
    assert kube.exec("p", "t", ["ls", "/"]) == (0, "ca.crt\n", "")


def test_exec_returns_the_commands_exit_code() -> None:
    kube, _ = exec_client(FakeStream({2: "ls: /x: No such file or directory\n", 3: EXIT_1}))
    assert kube.exec("p", "t", ["ls", "/x"]) == (1, "", "ls: /x: No such file or directory\n")


def test_exec_still_running_after_the_timeout_is_an_error() -> None:
    ws = FakeStream({}, still_open=True)
    kube, _ = exec_client(ws)
    with pytest.raises(KubeError, match="sleep still running after 30s"):
        kube.exec("p", "t", ["sleep", "99"])
    assert ws.closed


def test_exit_status_of_a_failure_without_exit_code_raises() -> None:
    failure = json.dumps({"status": "Failure", "reason": "InternalError", "code": 500,
                          "message": 'exec: "wget": executable file not found in $PATH'})
    with pytest.raises(KubeError) as raised:
        exit_status("exec in t/p", failure)
    assert raised.value.status == ApiStatus(500, "InternalError",
                                            'exec: "wget": executable file not found in $PATH')
    with pytest.raises(KubeError, match="closed without an exit status"):
        exit_status("exec in t/p", "")


def _wrapped(cause: Exception) -> ApiException:
    """As the client's websocket helper raises: ApiException(status=0) over the cause."""
    try:
        raise cause
    except Exception as e:
        try:
            raise ApiException(status=0, reason=str(e)) from None
        except ApiException as wrapped:
            wrapped.__context__ = e
            return wrapped


def test_exec_refused_upgrade_carries_the_servers_status() -> None:
    body = json.dumps(status(403, "Forbidden", 'pods "p" is forbidden: User "x" cannot create '
                                               'resource "pods/exec"')).encode()
    refused = websocket.WebSocketBadStatusException("Handshake status 403 Forbidden", 403,
                                                    resp_body=body)
    kube, _ = exec_client(_wrapped(refused))
    with pytest.raises(KubeError) as raised:
        kube.exec("p", "t", ["true"])
    assert raised.value.status is not None
    assert (raised.value.status.code, raised.value.status.reason) == (403, "Forbidden")
    assert str(raised.value).startswith("exec in t/p: 403 Forbidden: ")


def test_exec_to_a_server_that_is_gone_is_unreachable() -> None:
    kube, _ = exec_client(_wrapped(ConnectionRefusedError(111, "Connection refused")))
    with pytest.raises(Unreachable, match=r"https://10.17.0.10:6443: connection refused"):
        kube.exec("p", "t", ["true"])


# -- no API server -------------------------------------------------------------------------


def test_a_server_that_goes_away_is_unreachable(tmp_path: Path) -> None:
    fake = FakeApiServer()
    with fake.running():
        kube = connect(Target(str(fake.kubeconfig(tmp_path / "kc"))), 5).cluster
    with pytest.raises(Unreachable, match=f"cannot reach the API server {fake.url}: "
                                          "connection refused"):
        kube.get_json("nodes", "n")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose connections never complete: it listens with a full backlog, so
    the kernel drops further SYNs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


def test_a_server_that_never_accepts_is_unreachable(fake: FakeApiServer, tmp_path: Path,
                                                    silent_port: int) -> None:
    kubeconfig = fake.kubeconfig(tmp_path / "kc")
    kubeconfig.write_text(kubeconfig.read_text().replace(fake.url,
                                                         f"https://127.0.0.1:{silent_port}"))
    with pytest.raises(Unreachable, match="connection timed out"):
        connect(Target(str(kubeconfig)), 1)


def test_a_slow_answer_is_an_error_of_that_call(kube: KubeClient, fake: FakeApiServer) -> None:
    fake.delays[("GET", "/api/v1/nodes/n")] = 1.5
    slow = KubeClient(kube.api, 1)
    with pytest.raises(KubeError, match="get nodes n: no answer within 1s"):
        slow.get_json("nodes", "n")


def test_rejected_credentials_are_unreachable(fake: FakeApiServer, tmp_path: Path) -> None:
    fake.answer("GET", "/version/", (401, status(401, "Unauthorized", "Unauthorized")))
    with pytest.raises(Unreachable, match="refused the credentials: 401 Unauthorized"):
        connect(Target(str(fake.kubeconfig(tmp_path / "kc"))), 5)


def test_a_tls_failure_is_unreachable(fake: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = fake.kubeconfig(tmp_path / "kc")
    kubeconfig.write_text(kubeconfig.read_text().replace("http://", "https://"))
    with pytest.raises(Unreachable, match="TLS"):
        connect(Target(str(kubeconfig)), 5)
