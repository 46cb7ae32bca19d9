"""`Cluster` through the official Kubernetes Python client: no kubectl, no parsing of text.

Objects are read as the API serves them (raw JSON, so the checks see the same field names as
the API reference); refusals are the server's `Status` (code, reason, message); exec goes
through the API's websocket stream (`connect_get_namespaced_pod_exec`), as `kubectl exec`
does. Credentials stay in the kubeconfig and the client's memory; nothing is written back.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import websocket
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream as kube_stream

from verify.kube import ApiStatus, Cluster, KubeError, Obj, PodCondition, Unreachable
from verify.report import one_line

DEFAULT_KUBECONFIG = Path(".kube") / "config"
# An RBAC refusal is Forbidden too, but it is not admission answering: the check could not run.
_RBAC_DENIAL = "cannot create resource"
_STDOUT, _STDERR, _ERROR = 1, 2, 3  # the exec stream's channels
POLL_SECONDS = 1.0


class ConfigError(Exception):
    """No usable kubeconfig: a usage problem, reported before anything is contacted."""


@dataclass(frozen=True)
class Target:
    """Which kubeconfig(s) and context to use. `config_file` may list several files joined by
    ':' (as $KUBECONFIG does); the client merges them as kubectl does."""

    config_file: str
    context: str | None = None


def kubeconfig_target(flag: Path | None, environ: Mapping[str, str], home: Path,
                      context: str | None = None) -> Target:
    """kubectl's order: --kubeconfig, else $KUBECONFIG (a ':' list; files that do not exist are
    skipped), else ~/.kube/config."""
    if flag is not None:
        if not flag.is_file():
            raise ConfigError(f"kubeconfig {flag} not found; write it with `pulumi stack output "
                              f"kubeconfig --show-secrets > {flag}`")
        return Target(str(flag), context)
    listed = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        present = [p for p in listed if Path(p).expanduser().is_file()]
        if not present:
            raise ConfigError(f"no file of KUBECONFIG={environ['KUBECONFIG']} exists")
        return Target(os.pathsep.join(present), context)
    default = home / DEFAULT_KUBECONFIG
    if not default.is_file():
        raise ConfigError(f"no kubeconfig: pass --kubeconfig FILE, set KUBECONFIG, or write "
                          f"{default}")
    return Target(str(default), context)


def api_status(e: ApiException) -> ApiStatus:
    """The `Status` the server sent with an error, or what the HTTP answer says without one."""
    body = e.body.decode("utf-8", "replace") if isinstance(e.body, bytes) else (e.body or "")
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        return ApiStatus(int(parsed.get("code") or e.status or 0), str(parsed.get("reason") or ""),
                         str(parsed.get("message") or ""))
    return ApiStatus(int(e.status or 0), "", one_line(f"{e.reason or ''} {body}", 200))


def is_admission_refusal(status: ApiStatus) -> bool:
    """Forbidden is how Pod Security, admission policies and the RuntimeClass plugin refuse a
    pod; the RuntimeClass plugin's lookup of an empty name fails without a reason (code 500).
    Which control refused is for the caller to judge from the message."""
    if status.code == 403 and status.reason == "Forbidden":
        return _RBAC_DENIAL not in status.message
    return status.code == 500 and not status.reason


def _os_error(e: BaseException | None) -> str | None:
    """The innermost OS-level cause (connection refused, TLS failure, timeout), briefly."""
    seen: set[int] = set()
    found = None
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ssl.SSLError):
            return f"TLS: {e.reason or e}"
        if isinstance(e, TimeoutError | urllib3.exceptions.ConnectTimeoutError):
            found = "connection timed out"
        elif isinstance(e, OSError) and e.strerror:
            found = e.strerror.lower()
        nxt = getattr(e, "reason", None)
        e = nxt if isinstance(nxt, BaseException) else (e.__cause__ or e.__context__)
    return found


class KubeClient:
    """`Cluster` over a `kubernetes.client.ApiClient`. `stream` is the client's exec helper,
    replaced in tests; `clock` and `sleep` pace `wait_pod`."""

    def __init__(self, api: Any, timeout: float, stream: Callable[..., Any] = kube_stream,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.server = str(api.configuration.host)
        self.timeout = timeout
        # (connect, read): a host that does not answer fails fast, a slow answer may take long.
        self.request_timeout = (min(timeout, 10.0), timeout)
        self.core = client.CoreV1Api(api)
        self.node = client.NodeV1Api(api)
        self.stream = stream
        self.clock = clock
        self.sleep = sleep

    # -- errors -----------------------------------------------------------------------------

    def _failure(self, what: str, e: Exception) -> Exception:
        if isinstance(e, ApiException) and e.status:
            status = api_status(e)
            if status.code == 401:
                return Unreachable(f"the API server {self.server} refused the credentials: "
                                   f"{status}")
            return KubeError(f"{what}: {status}", status)
        if isinstance(e, urllib3.exceptions.ReadTimeoutError) or (
                isinstance(e, urllib3.exceptions.MaxRetryError)
                and isinstance(e.reason, urllib3.exceptions.ReadTimeoutError)):
            return KubeError(f"{what}: no answer within {self.timeout:g}s")
        cause = _os_error(e)
        if cause is not None:
            return Unreachable(f"cannot reach the API server {self.server}: {cause}")
        if isinstance(e, ApiException):
            return KubeError(f"{what}: {one_line(str(e.reason), 200)}")
        return KubeError(f"{what}: {one_line(str(e), 200)}")

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, _request_timeout=self.request_timeout, **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError) as e:
            raise self._failure(what, e) from None

    def _json(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        response = self._call(what, method, *args, _preload_content=False, **kwargs)
        try:
            value = json.loads(response.data)
        except ValueError as e:
            raise KubeError(f"{what}: the answer is not JSON ({e})") from None
        if not isinstance(value, dict):
            raise KubeError(f"{what}: expected a JSON object")
        return value

    # -- Cluster ------------------------------------------------------------------------------

    def server_version(self) -> str:
        """GET /version: proves the server answers and takes our credentials."""
        info = self._json("version", client.VersionApi(self.api).get_code)
        return str(info.get("gitVersion", "?"))

    def get_json(self, resource: str, name: str | None = None, namespace: str | None = None,
                 selector: str | None = None) -> Obj:
        what = f"get {resource}{f' {name}' if name else ''}"
        listing = {"label_selector": selector} if selector else {}
        match resource, name, namespace:
            case "runtimeclasses", None, None:
                return self._json(what, self.node.list_runtime_class, **listing)
            case "namespaces", None, None:
                return self._json(what, self.core.list_namespace, **listing)
            case "nodes", str(), None:
                return self._json(what, self.core.read_node, name)
            case "pods", None, str():
                return self._json(what, self.core.list_namespaced_pod, namespace, **listing)
            case "pods", str(), str():
                return self._json(what, self.core.read_namespaced_pod, name, namespace)
        raise ValueError(f"verify does not read {resource} (name={name}, "
                         f"namespace={namespace})")

    def create(self, manifest: Obj) -> Obj:
        meta = manifest["metadata"]
        return self._json(f"create pod {meta['name']}", self.core.create_namespaced_pod,
                          meta["namespace"], manifest)

    def dry_run_create(self, manifest: Obj) -> ApiStatus | None:
        meta = manifest["metadata"]
        try:
            self._json(f"create pod {meta['name']} (dry run)", self.core.create_namespaced_pod,
                       meta["namespace"], manifest, dry_run="All")
        except KubeError as e:
            if e.status is not None and is_admission_refusal(e.status):
                return e.status
            raise
        return None

    def delete(self, resource: str, name: str, namespace: str) -> None:
        if resource != "pod":
            raise ValueError(f"verify deletes only pods, not {resource}")
        try:
            self._call(f"delete pod {name}", self.core.delete_namespaced_pod, name, namespace,
                       _preload_content=False)
        except KubeError as e:
            if e.status is None or e.status.code != 404:
                raise

    def logs(self, pod: str, namespace: str) -> str:
        response = self._call(f"logs {pod}", self.core.read_namespaced_pod_log, pod, namespace,
                              _preload_content=False)
        return bytes(response.data).decode("utf-8", "replace")

    def exec(self, pod: str, namespace: str, command: Sequence[str]) -> tuple[int, str, str]:
        what = f"exec in {namespace}/{pod}"
        try:
            ws = self.stream(self.core.connect_get_namespaced_pod_exec, pod, namespace,
                             command=list(command), stderr=True, stdin=False, stdout=True,
                             tty=False, _preload_content=False)
        except ApiException as e:
            raise self._exec_failure(what, e) from None
        try:
            ws.run_forever(timeout=self.timeout)
            if ws.is_open():
                raise KubeError(f"{what}: {command[0]} still running after {self.timeout:g}s")
            out, err = ws.read_channel(_STDOUT), ws.read_channel(_STDERR)
            return exit_status(what, ws.read_channel(_ERROR)), out, err
        finally:
            ws.close()

    def _exec_failure(self, what: str, e: ApiException) -> Exception:
        # The websocket helper turns every failure into ApiException(status=0); a refused
        # upgrade still carries the server's Status in the original exception.
        handshake = e.__context__
        if isinstance(handshake, websocket.WebSocketBadStatusException):
            refused = ApiException(status=handshake.status_code, reason=str(handshake))
            refused.body = handshake.resp_body
            return self._failure(what, refused)
        cause = _os_error(handshake)
        if cause is not None:
            return Unreachable(f"cannot reach the API server {self.server}: {cause}")
        return KubeError(f"{what}: {one_line(str(e.reason), 200)}")

    def wait_pod(self, pod: str, namespace: str, condition: PodCondition,
                 timeout: float) -> None:
        deadline = self.clock() + timeout
        while True:
            obj = self.get_json("pods", pod, namespace)
            status = obj.get("status", {})
            phase = status.get("phase", "")
            if condition == "Succeeded" and phase == "Succeeded":
                return
            if condition == "Ready" and any(c.get("type") == "Ready" and c.get("status") == "True"
                                            for c in status.get("conditions", [])):
                return
            if phase in ("Succeeded", "Failed"):
                raise KubeError(f"pod {namespace}/{pod} ended ({phase}) before it was "
                                f"{condition}")
            if self.clock() >= deadline:
                raise KubeError(f"pod {namespace}/{pod} not {condition} after {timeout:g}s: "
                                f"{pod_state(obj)}")
            self.sleep(POLL_SECONDS)


def exit_status(what: str, error_channel: str) -> int:
    """The exit code from the exec stream's error channel (a `Status`: Success, or Failure
    with reason NonZeroExitCode and the code as its ExitCode cause)."""
    if not error_channel.strip():
        raise KubeError(f"{what}: the stream closed without an exit status")
    try:
        status = json.loads(error_channel)
    except ValueError:
        raise KubeError(f"{what}: {one_line(error_channel, 200)}") from None
    if status.get("status") == "Success":
        return 0
    for cause in status.get("details", {}).get("causes", []):
        if cause.get("reason") == "ExitCode":
            return int(cause.get("message", "-1"))
    api = ApiStatus(int(status.get("code") or 0), str(status.get("reason") or ""),
                    str(status.get("message") or ""))
    raise KubeError(f"{what}: {api}", api)


def pod_state(pod: Obj) -> str:
    """Why a pod is not there yet, in a few words: phase, and what its container waits for or
    why it was not scheduled."""
    status = pod.get("status", {})
    words = [status.get("phase") or "no phase"]
    for c in status.get("containerStatuses", []):
        waiting = c.get("state", {}).get("waiting")
        if waiting:
            words.append(f"{c.get('name')}: {waiting.get('reason', '')} "
                         f"{waiting.get('message', '')}".strip())
    for c in status.get("conditions", []):
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            words.append(f"unschedulable: {c.get('message', '')}")
    return one_line("; ".join(words), 200)


@dataclass(frozen=True)
class Connection:
    cluster: Cluster
    server: str
    version: str


def api_client(target: Target, timeout: float) -> Any:
    """A `kubernetes.client.ApiClient` for the target; ConfigError if the kubeconfig is not
    usable. Nothing is contacted yet."""
    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=target.config_file, context=target.context,
                                client_configuration=configuration, persist_config=False)
    except (config.ConfigException, yaml.YAMLError, OSError, ValueError, KeyError,
            TypeError) as e:
        raise ConfigError(f"kubeconfig {target.config_file}: {one_line(str(e), 200)}") from None
    configuration.retries = 1
    # The websocket used for exec has no timeout of its own: bound its connect.
    websocket.setdefaulttimeout(min(timeout, 10.0))
    return client.ApiClient(configuration)


def connect(target: Target, timeout: float) -> Connection:
    """A client for the target's cluster, once the API server has answered /version.
    Raises ConfigError for an unusable kubeconfig, Unreachable when the server cannot be used."""
    cluster = KubeClient(api_client(target, timeout), timeout)
    try:
        version = cluster.server_version()
    except KubeError as e:  # answered, but not as an API server does
        raise Unreachable(f"the API server {cluster.server} did not answer /version: "
                          f"{e}") from None
    return Connection(cluster, cluster.server, version)
