"""What the program gives the API server, read from its graph under mocks: the kube-apiserver
flags and files of the first control plane's kubeadm step, and every Kubernetes object in the
order the graph's dependencies allow."""

from __future__ import annotations

import base64
import posixpath
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.render.kubeadm import AUDIT_POLICY, ENCRYPTION_CONFIG
from components.spec import ClusterSpec, load
from tests.graph.harness import Graph, Registration, stack_config

Obj = dict[str, Any]
KUBEADM_INIT_SUFFIX = "-kubeadm-init"


def stack_spec(stack: str) -> ClusterSpec:
    return load({k.split(":", 1)[1]: v for k, v in stack_config(stack).items()}, stack)


def step_params(step: Registration) -> dict[str, str]:
    """The `export NAME=value` parameters at the top of a node step's stdin."""
    params: dict[str, str] = {}
    for line in str(step.inputs["stdin"]).splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            (params[name],) = shlex.split(value)
    return params


def decoded(params: Mapping[str, str], name: str) -> str:
    return base64.b64decode(params[f"{name}_B64"]).decode()


@dataclass(frozen=True)
class ApiServerSetup:
    """kube-apiserver flags of the program's ClusterConfiguration, rooted under a test folder."""

    extra_args: dict[str, str]  # as rendered (node paths)
    files: dict[str, str]  # node path -> content the node step writes there
    mounted_dirs: tuple[str, ...]  # extraVolumes the static pod mounts

    def rooted(self, root: Path) -> dict[str, str]:
        """Flags with every node path moved under `root`; the files written there."""
        for path, content in self.files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        args: dict[str, str] = {}
        for name, value in self.extra_args.items():
            if value.startswith("/"):
                (root / posixpath.dirname(value).lstrip("/")).mkdir(parents=True, exist_ok=True)
                value = str(root / value.lstrip("/"))
            args[name] = value
        return args


def apiserver_setup(graph: Graph) -> ApiServerSetup:
    (init,) = [r for r in graph.of_type("command:remote:Command")
               if r.name.endswith(KUBEADM_INIT_SUFFIX)]
    params = step_params(init)
    documents = list(yaml.safe_load_all(decoded(params, "KUBEADM_CONFIG")))
    (cluster,) = [d for d in documents if d["kind"] == "ClusterConfiguration"]
    api_server = cluster["apiServer"]
    extra_args = {a["name"]: a["value"] for a in api_server.get("extraArgs", [])}
    mounted = tuple(v["mountPath"] for v in api_server.get("extraVolumes", []))
    unmounted = [v for v in extra_args.values() if v.startswith("/") and not any(
        v == d or v.startswith(d.rstrip("/") + "/") for d in mounted)]
    if unmounted:
        raise AssertionError(f"API-server flags name paths its static pod does not mount: "
                             f"{unmounted} (extraVolumes: {list(mounted)})")
    files = {ENCRYPTION_CONFIG: decoded(params, "ENCRYPTION_CONFIG"),
             AUDIT_POLICY: decoded(params, "AUDIT_POLICY")}
    return ApiServerSetup(extra_args, files, mounted)


def manifest(registration: Registration) -> Obj:
    _, group_version, kind = registration.type.split(":")
    group, _, version = group_version.rpartition("/")
    api_version = version if group == "core" else f"{group}/{version}"
    return {"apiVersion": api_version, "kind": kind, **registration.inputs}


def kubernetes_objects(graph: Graph) -> list[Registration]:
    """Every Kubernetes object of the graph, each after the objects it depends on."""
    objects = [r for r in graph.resources if r.type.startswith("kubernetes:")
               and not r.type.startswith("pulumi:providers:")]
    urns = {r.urn for r in objects}
    waits = {r.urn: graph.ancestors(r.urn) & urns for r in objects}
    ordered: list[Registration] = []
    done: set[str] = set()
    while len(ordered) < len(objects):
        ready = [r for r in objects if r.urn not in done and waits[r.urn] <= done]
        if not ready:
            raise AssertionError("the Kubernetes objects' dependencies form a cycle")
        ordered += ready
        done |= {r.urn for r in ready}
    return ordered
