"""A stack's Kubernetes objects on a real control plane: start it with the stack's API-server
setup, apply every object in dependency order (server-side apply, as the provider does), and
wait until tenant namespaces admit pods."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from components.spec import ClusterSpec
from tests.apiserver.controlplane import ControlPlane, ControlPlaneError, Kubectl
from tests.apiserver.program import (
    apiserver_setup,
    kubernetes_objects,
    manifest,
    stack_spec,
)
from tests.graph.conftest import stack_graph
from tests.graph.harness import Registration

APISERVER_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "kubeadm")
FIELD_MANAGER = "pulumi-kubernetes"


@dataclass
class AppliedStack:
    stack: str
    spec: ClusterSpec
    plane: ControlPlane
    objects: list[Registration]
    results: dict[str, str] = field(default_factory=dict)  # object -> "" or kubectl's error

    @property
    def kubectl(self) -> Kubectl:
        return self.plane.kubectl

    @property
    def audit_log(self) -> Path:
        return Path(self.plane.apiserver_args["audit-log-path"])

    def tenant(self, index: int = 0) -> str:
        return self.spec.tenants[index].name


def object_key(obj: dict[str, object]) -> str:
    meta = obj.get("metadata")
    assert isinstance(meta, dict)
    namespace = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {namespace}{meta['name']}"


def apply(kubectl: Kubectl, obj: dict[str, object]) -> str:
    """Server-side apply with strict field validation, as the provider does; "" or the error."""
    proc = kubectl.run("apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
                       "--validate=strict", "-f", "-", stdin=json.dumps(obj), check=False)
    return "" if proc.returncode == 0 else proc.stderr.strip()


def wait_for(what: str, ready: Callable[[], object], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise ControlPlaneError(f"{what} not ready after {timeout:.0f}s")


def tenant_ready(kubectl: Kubectl, namespace: str) -> bool:
    """The namespace's default service account exists and its quota has been counted (the
    quota admission refuses pods until the controller has computed usage)."""
    sa = kubectl.run("get", "serviceaccount", "default", "-n", namespace, check=False)
    if sa.returncode != 0:
        return False
    quotas = kubectl.get("resourcequota", "-n", namespace)["items"]
    return all(q.get("status", {}).get("used") is not None for q in quotas)


def applied_stack(stack: str, bins: Mapping[str, Path], workdir: Path,
                  omit: frozenset[str] = frozenset(),
                  timings: dict[str, float] | None = None) -> AppliedStack:
    """The stack's control plane, started, with its objects applied (all but `omit`)."""
    timings = {} if timings is None else timings
    graph = stack_graph(stack)
    setup = apiserver_setup(graph)
    # The node paths the flags name (audit log, encryption config) live under workdir/node.
    plane = ControlPlane(bins, workdir, setup.rooted(workdir / "node"))
    begin = time.monotonic()
    plane.start()
    timings[f"{stack}: control plane start"] = plane.started_seconds
    objects = [r for r in kubernetes_objects(graph) if object_key(manifest(r)) not in omit]
    applied = AppliedStack(stack, stack_spec(stack), plane, objects)
    try:
        for registration in objects:
            obj = manifest(registration)
            applied.results[object_key(obj)] = apply(plane.kubectl, obj)
        for tenant in applied.spec.tenants:
            wait_for(f"tenant {tenant.name}",
                     functools.partial(tenant_ready, plane.kubectl, tenant.name))
    except BaseException:
        plane.stop()
        raise
    timings[f"{stack}: start and apply"] = time.monotonic() - begin
    return applied
