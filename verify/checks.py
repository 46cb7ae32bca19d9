"""The cluster-level end-to-end cases of security.md, observed through a `Cluster`.

Every check yields rows whose names do not depend on the outcome; a check that cannot run or
whose evidence is void (the compliant control pod denied, a listener that does not listen)
yields ERROR rows, never PASS. `Unreachable` is not caught: when the API server cannot be
talked to, there is nothing to report row by row.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from components.render.guardrails import POLICY_NAME, proof_job
from components.spec import PROOF_IMAGE, SANDBOX_HANDLERS, TENANT_LABEL, sandbox_label
from verify.kube import ApiStatus, Cluster, KubeError, Obj, Unreachable
from verify.report import Row, Status, one_line

Spec = tuple[str, str]  # (row name, expectation)

MANAGED_BY = ("app.kubernetes.io/managed-by", "sandboxed-k8s-verify")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
DNS_NAME = "kubernetes.default.svc.cluster.local"
METADATA_URL = "http://169.254.169.254:80/"
KUBELET_PORT = 10250
LISTENER_PORT = 8080
LISTENER_MARKER = "sandboxed-k8s-verify-listener"

RUNTIME_CLASSES: Spec = ("runtimeclasses", f"a RuntimeClass named {' or '.join(SANDBOX_HANDLERS)}")
CONTROL: Spec = ("admission: compliant pod", "allowed (server dry-run)")
TOKEN: Spec = ("no service-account token", f"`ls {TOKEN_PATH}` fails in a tenant pod")
NET_TENANT: Spec = ("network: tenant -> other tenant",
                    f"pod in another tenant namespace :{LISTENER_PORT} unreachable")
NET_KUBELET: Spec = ("network: tenant -> node kubelet",
                     f"own node InternalIP:{KUBELET_PORT} times out or answers 401/403")
NET_METADATA: Spec = ("network: tenant -> metadata", f"{METADATA_URL} times out")
NET_DNS: Spec = ("network: tenant DNS", f"nslookup {DNS_NAME} resolves")
POD_SPECS = (TOKEN, NET_TENANT, NET_KUBELET, NET_METADATA, NET_DNS)


class CheckError(Exception):
    """An object or field the check needs is missing."""


@dataclass(frozen=True)
class DenialCase:
    slug: str
    name: str
    markers: tuple[str, ...]  # one must appear in the denial: it names the control under test
    mutate: Callable[[Obj], object]
    by: str = ""  # the expectation, when it is not simply PodSecurity or the policy

    @property
    def spec(self) -> Spec:
        by = self.by or ("PodSecurity" if self.markers == _PSA else f"policy {POLICY_NAME}")
        return f"admission: deny {self.name}", f"denied by {by}"


_PSA = ("PodSecurity",)
_POLICY = (POLICY_NAME,)
DENIAL_CASES = (
    DenialCase("no-class", "no runtimeClassName", _POLICY,
               lambda p: p["spec"].pop("runtimeClassName")),
    # No RuntimeClass `runc` exists, so the RuntimeClass admission plugin may refuse it first.
    # The RuntimeClass admission plugin looks the name up before any policy runs, and an
    # empty name cannot be looked up: that refusal comes first, on every cluster.
    DenialCase("empty-class", "empty runtimeClassName",
               (*_POLICY, "resource name may not be empty"),
               lambda p: p["spec"].update(runtimeClassName=""),
               f"policy {POLICY_NAME} (or: the RuntimeClass plugin refuses an empty name)"),
    DenialCase("runc", "runtimeClassName runc", (*_POLICY, 'RuntimeClass "runc" not found'),
               lambda p: p["spec"].update(runtimeClassName="runc"),
               f"policy {POLICY_NAME} (or: no RuntimeClass runc)"),
    DenialCase("privileged", "privileged", _PSA,
               lambda p: p["spec"]["containers"][0].update(securityContext={"privileged": True})),
    DenialCase("host-path", "hostPath volume", _PSA,
               lambda p: p["spec"].update(volumes=[{"name": "host", "hostPath": {"path": "/"}}])),
    DenialCase("host-network", "hostNetwork", _PSA, lambda p: p["spec"].update(hostNetwork=True)),
    DenialCase("host-pid", "hostPID", _PSA, lambda p: p["spec"].update(hostPID=True)),
    DenialCase("host-port", "hostPort", _PSA,
               lambda p: p["spec"]["containers"][0].update(
                   ports=[{"containerPort": 8080, "hostPort": 8080}])),
    DenialCase("gvisor-flag", "dev.gvisor.flag.debug annotation", _POLICY,
               lambda p: p["metadata"].update(annotations={"dev.gvisor.flag.debug": "true"})),
    DenialCase("automount", "automountServiceAccountToken true", _POLICY,
               lambda p: p["spec"].update(automountServiceAccountToken=True)),
    DenialCase("projected-token", "projected service-account token volume", _POLICY,
               lambda p: p["spec"].update(volumes=[{"name": "token", "projected": {
                   "sources": [{"serviceAccountToken": {"path": "token"}}]}}])),
    DenialCase("system-priority", "priorityClassName system-node-critical", _POLICY,
               lambda p: p["spec"].update(priorityClassName="system-node-critical")),
    DenialCase("cached-image", "imagePullPolicy IfNotPresent", _POLICY,
               lambda p: p["spec"]["containers"][0].update(imagePullPolicy="IfNotPresent")),
)


def proof_specs(runtime: str) -> tuple[Spec, Spec, Spec]:
    kernel = "uname -r differs from the node's"
    if runtime == "gvisor":
        kernel += "; dmesg mentions gVisor"
    return ((f"runtimeclass {runtime}: handler", f"handler {SANDBOX_HANDLERS[runtime]}"),
            (f"sandbox proof {runtime}: node", f"ran on a node labelled {sandbox_label(runtime)}"),
            (f"sandbox proof {runtime}: kernel", kernel))


def _row(spec: Spec, observed: str, status: Status, api_status: ApiStatus | None = None) -> Row:
    return Row(spec[0], spec[1], observed, status, api_status)


def _errors(specs: Sequence[Spec], reason: str) -> list[Row]:
    return [_row(s, reason, Status.ERROR) for s in specs]


def _guard(spec: Spec, check: Callable[[], Row]) -> Row:
    try:
        return check()
    except KubeError as e:
        return _row(spec, str(e), Status.ERROR, e.status)
    except CheckError as e:
        return _row(spec, str(e), Status.ERROR)


def _field(obj: Obj, *path: str) -> str:
    value: object = obj
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, str) or not value:
        name = obj.get("metadata", {}).get("name", "?")
        raise CheckError(f"{name} has no .{'.'.join(path)}")
    return value


def compliant_pod(name: str, namespace: str, runtime_class: str, command: list[str]) -> Obj:
    """A pod the tenant policy and Pod Security `restricted` must both admit."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
        "spec": {
            "runtimeClassName": runtime_class,
            "automountServiceAccountToken": False,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main", "image": PROOF_IMAGE, "command": command,
                # Tenant pods pull every time: the node's cache may hold another tenant's image.
                "imagePullPolicy": "Always",
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


# ---------------------------------------------------------------------------------------------
# 1. Sandbox proof Jobs
# ---------------------------------------------------------------------------------------------


def sandbox_classes(cluster: Cluster) -> dict[str, Obj]:
    """The sandbox RuntimeClasses present, in SANDBOX_HANDLERS order."""
    found = {_field(rc, "metadata", "name"): rc
             for rc in cluster.get_json("runtimeclasses").get("items", [])}
    return {name: found[name] for name in SANDBOX_HANDLERS if name in found}


def _proof_pod(cluster: Cluster, runtime: str, timeout: float) -> Obj:
    meta = proof_job(runtime)["metadata"]
    job, namespace = meta["name"], meta["namespace"]
    pods = cluster.get_json("pods", namespace=namespace,
                            selector=f"{JOB_NAME_LABEL}={job}").get("items", [])
    if not pods:
        raise CheckError(f"no pod of Job {namespace}/{job} (deleted? `pulumi up --refresh` "
                         "recreates it)")
    pod: Obj = max(pods, key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")))
    name = _field(pod, "metadata", "name")
    phase = pod.get("status", {}).get("phase")
    if phase == "Failed":
        raise CheckError(f"proof pod {namespace}/{name} failed")
    if phase != "Succeeded":
        cluster.wait_pod(name, namespace, "Succeeded", timeout)
        pod = cluster.get_json("pods", name, namespace)
    return pod


def _kernel_row(spec: Spec, runtime: str, logs: str, node_kernel: str) -> Row:
    match = re.search(r"^kernel-release:\s*(\S+)", logs, re.MULTILINE)
    if match is None:
        raise CheckError("the proof log has no 'kernel-release:' line")
    release = match.group(1)
    gvisor_seen = "gvisor" in logs.lower()
    observed = f"pod {release}, node {node_kernel}"
    if runtime == "gvisor":
        observed += "; dmesg mentions gVisor" if gvisor_seen else "; no gVisor in dmesg"
    ok = release != node_kernel and (gvisor_seen or runtime != "gvisor")
    return _row(spec, observed, Status.PASS if ok else Status.FAIL)


def check_sandbox_proof(cluster: Cluster, runtime: str, runtime_class: Obj,
                        timeout: float) -> list[Row]:
    handler_spec, node_spec, kernel_spec = proof_specs(runtime)
    handler = runtime_class.get("handler")
    rows = [_row(handler_spec, f"handler {handler}",
                 Status.PASS if handler == SANDBOX_HANDLERS[runtime] else Status.FAIL)]
    try:
        pod = _proof_pod(cluster, runtime, timeout)
        node_name = _field(pod, "spec", "nodeName")
        node = cluster.get_json("nodes", node_name)
    except (KubeError, CheckError) as e:
        return [*rows, *_errors([node_spec, kernel_spec], str(e))]
    label = sandbox_label(runtime)
    value = node.get("metadata", {}).get("labels", {}).get(label)
    rows.append(_row(node_spec, f"{node_name}: {label}={value}" if value else
                     f"{node_name}: no {label} label",
                     Status.PASS if value == "true" else Status.FAIL))
    rows.append(_guard(kernel_spec, lambda: _kernel_row(
        kernel_spec, runtime, cluster.logs(_field(pod, "metadata", "name"),
                                           _field(pod, "metadata", "namespace")),
        _field(node, "status", "nodeInfo", "kernelVersion"))))
    return rows


# ---------------------------------------------------------------------------------------------
# 2. Admission: denied pods, and a compliant control that must be allowed
# ---------------------------------------------------------------------------------------------


def _denial_text(status: ApiStatus) -> str:
    reason = status.message.split(" is forbidden: ", 1)[-1]
    text = one_line(re.sub(r"ValidatingAdmissionPolicy '([^']+)' with binding '[^']+' denied "
                           r"request: ", r"policy \1: ", reason))
    return f"({status.code}{f' {status.reason}' if status.reason else ''}): {text}"


def check_admission(cluster: Cluster, namespace: str, runtime_class: str,
                    run_id: str) -> list[Row]:
    specs = [case.spec for case in DENIAL_CASES]
    sleep = ["sleep", "3600"]
    control = compliant_pod(f"verify-control-{run_id}", namespace, runtime_class, sleep)
    try:
        refusal = cluster.dry_run_create(control)
    except KubeError as e:
        return [_row(CONTROL, str(e), Status.ERROR, e.status),
                *_errors(specs, "the control pod could not be checked")]
    if refusal is not None:
        return [_row(CONTROL, f"denied {_denial_text(refusal)}", Status.FAIL, refusal),
                *_errors(specs, "the compliant control pod was denied too, so a denial here "
                                "proves nothing")]
    rows = [_row(CONTROL, f"allowed in {namespace} ({runtime_class})", Status.PASS)]
    for case, spec in zip(DENIAL_CASES, specs, strict=True):
        pod = compliant_pod(f"verify-deny-{case.slug}-{run_id}", namespace, runtime_class, sleep)
        case.mutate(pod)
        try:
            refusal = cluster.dry_run_create(pod)
        except KubeError as e:
            rows.append(_row(spec, str(e), Status.ERROR, e.status))
            continue
        if refusal is None:
            rows.append(_row(spec, "allowed", Status.FAIL))
        elif any(marker in refusal.message for marker in case.markers):
            rows.append(_row(spec, f"denied {_denial_text(refusal)}", Status.PASS, refusal))
        else:
            rows.append(_row(spec, f"denied by another control {_denial_text(refusal)}",
                             Status.ERROR, refusal))
    return rows


# ---------------------------------------------------------------------------------------------
# 3 + 4. A running tenant pod: no token, and what it can reach
# ---------------------------------------------------------------------------------------------

_HTTP_STATUS = re.compile(r"HTTP/1\.[01] (\d{3})")
_BLOCKED = re.compile(r"timed out|connection refused|no route to host|unreachable", re.I)
_KILLED_BY_TIMEOUT = (124, 137, 143)


def _said(*streams: str, width: int | None = 80) -> str:
    """What a command printed, on one line."""
    return one_line(" ".join(streams), width)


def wget(url: str) -> list[str]:
    # `timeout` bounds the attempt. Not wget's own -T: busybox builds without its timeout
    # feature (Debian's before 1.36.1-5) crash on it.
    return ["timeout", "10", "wget", "-q", "-O-", "--no-check-certificate", url]


def probe_row(spec: Spec, url: str, result: tuple[int, str, str],
              accept_status: tuple[str, ...] = ()) -> Row:
    """PASS when the connection was blocked (or answered only with an accepted status)."""
    rc, out, err = result
    text = _said(out, err)
    status = _HTTP_STATUS.search(err)
    if rc == 0:
        return _row(spec, f"{url} answered (HTTP 200): {text}", Status.FAIL)
    if status is not None:
        code = status.group(1)
        ok = code in accept_status
        return _row(spec, f"{url} answered HTTP {code}", Status.PASS if ok else Status.FAIL)
    if rc in _KILLED_BY_TIMEOUT or _BLOCKED.search(err):
        return _row(spec, f"{url} blocked: {text or f'killed after timeout (rc {rc})'}",
                    Status.PASS)
    return _row(spec, f"{url}: unclear outcome (rc {rc}): {text}", Status.ERROR)


def _token_row(cluster: Cluster, pod: str, namespace: str) -> Row:
    rc, out, err = cluster.exec(pod, namespace, ["ls", TOKEN_PATH])
    if rc == 0:
        return _row(TOKEN, f"token directory present: {_said(out)}", Status.FAIL)
    if "No such file" in err:
        return _row(TOKEN, f"absent in {namespace}/{pod}", Status.PASS)
    return _row(TOKEN, f"ls failed unexpectedly (rc {rc}): {_said(err)}", Status.ERROR)


def _tenant_row(cluster: Cluster, probe: tuple[str, str], listener: tuple[str, str] | None,
                listener_problem: str | None, timeout: float) -> Row:
    if listener is None:
        raise CheckError(f"only one tenant namespace ({probe[1]}); tenant -> tenant needs two")
    if listener_problem is not None:
        raise CheckError(f"listener pod: {listener_problem}")
    cluster.wait_pod(*listener, "Ready", timeout)
    ip = _field(cluster.get_json("pods", *listener), "status", "podIP")
    _, out, err = cluster.exec(*listener, wget(f"http://127.0.0.1:{LISTENER_PORT}/"))
    if LISTENER_MARKER not in out:
        raise CheckError(f"the listener does not serve :{LISTENER_PORT} even to itself: "
                         f"{_said(err)}")
    url = f"http://{ip}:{LISTENER_PORT}/"
    return probe_row(NET_TENANT, url, cluster.exec(*probe, wget(url)))


def _kubelet_row(cluster: Cluster, probe: tuple[str, str], probe_pod: Obj) -> Row:
    node = cluster.get_json("nodes", _field(probe_pod, "spec", "nodeName"))
    ips = [a.get("address") for a in node.get("status", {}).get("addresses", [])
           if a.get("type") == "InternalIP"]
    if not ips:
        raise CheckError(f"node {node.get('metadata', {}).get('name')} has no InternalIP")
    url = f"https://{ips[0]}:{KUBELET_PORT}/pods"
    return probe_row(NET_KUBELET, url, cluster.exec(*probe, wget(url)), ("401", "403"))


def _dns_row(cluster: Cluster, probe: tuple[str, str]) -> Row:
    rc, out, err = cluster.exec(*probe, ["timeout", "15", "nslookup", DNS_NAME])
    answer = re.search(r"Name:\s*\S+\s+Address:?\s*(\S+)", out)
    if rc == 0 and answer is not None:
        return _row(NET_DNS, f"{DNS_NAME} -> {answer.group(1)}", Status.PASS)
    return _row(NET_DNS, f"no answer (rc {rc}): {_said(out, err)}", Status.FAIL)


def check_pods(cluster: Cluster, tenants: Sequence[str], runtime_class: str, timeout: float,
               run_id: str) -> list[Row]:
    """Runs a probe pod (and a listener in a second tenant); always deletes them."""
    created: list[tuple[str, str]] = []
    try:
        return _pod_rows(cluster, tenants, runtime_class, timeout, run_id, created)
    finally:
        for name, namespace in created:
            try:
                cluster.delete("pod", name, namespace)
            except (KubeError, Unreachable) as e:
                print(f"warning: could not delete pod {namespace}/{name}: {e}", file=sys.stderr)


def _pod_rows(cluster: Cluster, tenants: Sequence[str], runtime_class: str, timeout: float,
              run_id: str, created: list[tuple[str, str]]) -> list[Row]:
    probe = (f"verify-probe-{run_id}", tenants[0])
    listener = (f"verify-listener-{run_id}", tenants[1]) if len(tenants) > 1 else None
    try:
        created.append(probe)
        cluster.create(compliant_pod(*probe, runtime_class, ["sleep", "3600"]))
    except KubeError as e:
        return _errors(POD_SPECS, f"probe pod: {e}")
    listener_problem = None
    if listener is not None:
        serve = (f"echo {LISTENER_MARKER} > /srv/index.html && "
                 f"exec httpd -f -p {LISTENER_PORT} -h /srv")
        pod = compliant_pod(*listener, runtime_class, ["sh", "-c", serve])
        pod["spec"]["volumes"] = [{"name": "www", "emptyDir": {}}]
        container = pod["spec"]["containers"][0]
        container["volumeMounts"] = [{"name": "www", "mountPath": "/srv"}]
        container["readinessProbe"] = {"periodSeconds": 1, "exec": {"command": [
            "wget", "-q", "-O-", f"http://127.0.0.1:{LISTENER_PORT}/"]}}
        try:
            created.append(listener)
            cluster.create(pod)
        except KubeError as e:
            listener_problem = str(e)
    try:
        cluster.wait_pod(*probe, "Ready", timeout)
        probe_pod = cluster.get_json("pods", *probe)
    except KubeError as e:
        return _errors(POD_SPECS, f"probe pod: {e}")
    return [
        _guard(TOKEN, lambda: _token_row(cluster, *probe)),
        _guard(NET_TENANT, lambda: _tenant_row(cluster, probe, listener, listener_problem,
                                               timeout)),
        _guard(NET_KUBELET, lambda: _kubelet_row(cluster, probe, probe_pod)),
        _guard(NET_METADATA, lambda: probe_row(NET_METADATA, METADATA_URL,
                                               cluster.exec(*probe, wget(METADATA_URL)))),
        _guard(NET_DNS, lambda: _dns_row(cluster, probe)),
    ]


# ---------------------------------------------------------------------------------------------


def run_checks(cluster: Cluster, timeout: float, run_id: str | None = None) -> list[Row]:
    run_id = run_id or secrets.token_hex(3)
    rows: list[Row] = []
    classes: dict[str, Obj] = {}
    try:
        classes = sandbox_classes(cluster)
        if not classes:
            rows.append(_row(RUNTIME_CLASSES, "none found", Status.ERROR))
    except (KubeError, CheckError) as e:
        rows.append(_row(RUNTIME_CLASSES, str(e), Status.ERROR))
    for runtime, runtime_class in classes.items():
        rows += check_sandbox_proof(cluster, runtime, runtime_class, timeout)

    admission_specs = [CONTROL, *(case.spec for case in DENIAL_CASES)]
    tenants: list[str] = []
    try:
        items = cluster.get_json("namespaces", selector=f"{TENANT_LABEL}=true").get("items", [])
        tenants = sorted(_field(ns, "metadata", "name") for ns in items)
        reason = "" if tenants else f"no namespace labelled {TENANT_LABEL}=true"
    except (KubeError, CheckError) as e:
        reason = f"listing tenant namespaces: {e}"
    if not classes:
        reason = reason or "no sandbox RuntimeClass to run tenant pods with"
    if reason:
        return [*rows, *_errors([*admission_specs, *POD_SPECS], reason)]
    # The control and probe pods use gVisor when it exists (any sandbox class would do).
    runtime = "gvisor" if "gvisor" in classes else next(iter(classes))
    rows += check_admission(cluster, tenants[0], runtime, run_id)
    rows += check_pods(cluster, tenants, runtime, timeout, run_id)
    return rows
