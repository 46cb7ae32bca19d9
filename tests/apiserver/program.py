"""What the program gives the API server, read from its graph under mocks: the kube-apiserver
flags and files of the first control plane's kubeadm step, and every Kubernetes object in the
order the graph's dependencies allow."""

from __future__ import annotations

import base64
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.render.kubeadm import AUDIT_POLICY, ENCRYPTION_CONFIG
from components.spec import ClusterSpec, load
from tests.graph.harness import Graph, Registration, stack_config
from tests.graph.test_graph import script_params, shipped_yaml
from tests.graph.test_manifests import manifest as graph_manifest

Obj = dict[str, Any]
KUBEADM_INIT_SUFFIX = "-kubeadm-init"


def stack_spec(stack: str) -> ClusterSpec:
    return load({k.split(":", 1)[1]: v for k, v in stack_config(stack).items()}, stack)


def decoded(step: Registration, name: str) -> str:
    """A file the node step ships as the base64 parameter `<name>_B64`."""
    return base64.b64decode(script_params(step)[f"{name}_B64"]).decode()


@dataclass(frozen=True)
class ApiServerSetup:
    """kube-apiserver flags of the program's ClusterConfiguration, rooted under a test folder."""

    extra_args: dict[str, str]  # as rendered (node paths)
    files: dict[str, str]  # node path -> content the node step writes there

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
    documents = shipped_yaml(init, "KUBEADM_CONFIG_B64")
    (cluster,) = [d for d in documents if d["kind"] == "ClusterConfiguration"]
    api_server = cluster["apiServer"]
    extra_args = {a["name"]: a["value"] for a in api_server.get("extraArgs", [])}
    mounted = tuple(v["mountPath"] for v in api_server.get("extraVolumes", []))
    unmounted = [v for v in extra_args.values() if v.startswith("/") and not any(
        v == d or v.startswith(d.rstrip("/") + "/") for d in mounted)]
    if unmounted:
        raise AssertionError(f"API-server flags name paths its static pod does not mount: "
                             f"{unmounted} (extraVolumes: {list(mounted)})")
    files = {ENCRYPTION_CONFIG: decoded(init, "ENCRYPTION_CONFIG"),
             AUDIT_POLICY: decoded(init, "AUDIT_POLICY")}
    return ApiServerSetup(extra_args, files)


def manifest(registration: Registration) -> Obj:
    return graph_manifest(registration.type, registration.inputs)


def kubernetes_objects(graph: Graph) -> list[Registration]:
    """Every Kubernetes object of the graph, each after the objects it depends on."""
    return graph.in_dependency_order([
        r for r in graph.resources
        if r.type.startswith("kubernetes:") and not r.type.startswith("pulumi:providers:")])
