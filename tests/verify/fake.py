"""A `Cluster` that replays recorded API answers (tests/verify/recorded/*.json).

Scenario keys: `get` maps "resource [-n ns] [-l selector] [name]" to the object; `logs` maps
"ns/pod" to the text or {"error": message}; `dry_run` maps a pod name to null (admitted) or
the server's refusal {code, reason, message}; `exec` lists {pod, match, rc, stdout, stderr}
(first whose `match` is in the command wins); `wait_errors` and `create_errors` map a pod name
to an error message; `unreachable` lists methods that find the API server gone. Anything not
recorded raises KubeError, as a failing API call would.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verify.kube import ApiStatus, KubeError, Obj, PodCondition, Unreachable

RECORDED = Path(__file__).parent / "recorded"


def load(name: str) -> dict[str, Any]:
    scenario: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return scenario


def get_key(resource: str, name: str | None = None, namespace: str | None = None,
            selector: str | None = None) -> str:
    """A recorded `get` answer's key: "resource [-n ns] [-l selector] [name]"."""
    return " ".join([resource, *(["-n", namespace] if namespace else []),
                     *(["-l", selector] if selector else []), *([name] if name else [])])


class FakeCluster:
    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = copy.deepcopy(scenario)
        self.created: list[Obj] = []
        self.deleted: list[tuple[str, str, str]] = []
        self.dry_runs: list[Obj] = []
        self.commands: list[tuple[str, list[str]]] = []

    def _reachable(self, method: str) -> None:
        if method in self.scenario.get("unreachable", []):
            raise Unreachable("cannot reach the API server https://10.17.0.10:6443: "
                              "connection refused")

    def get_json(self, resource: str, name: str | None = None, namespace: str | None = None,
                 selector: str | None = None) -> Obj:
        self._reachable("get_json")
        key = get_key(resource, name, namespace, selector)
        if key not in self.scenario["get"]:
            status = ApiStatus(404, "NotFound", f"{key} not found")
            raise KubeError(f"get {key}: {status}", status)
        value: Obj = copy.deepcopy(self.scenario["get"][key])
        return value

    def create(self, manifest: Obj) -> Obj:
        self._reachable("create")
        name = manifest["metadata"]["name"]
        if name in self.scenario.get("create_errors", {}):
            raise KubeError(self.scenario["create_errors"][name])
        self.created.append(manifest)
        return manifest

    def dry_run_create(self, manifest: Obj) -> ApiStatus | None:
        self._reachable("dry_run_create")
        self.dry_runs.append(manifest)
        name = manifest["metadata"]["name"]
        if name not in self.scenario["dry_run"]:
            raise KubeError(f"no recorded dry-run answer for {name}")
        refusal = self.scenario["dry_run"][name]
        return None if refusal is None else ApiStatus(**refusal)

    def delete(self, resource: str, name: str, namespace: str) -> None:
        self._reachable("delete")
        self.deleted.append((resource, name, namespace))

    def logs(self, pod: str, namespace: str) -> str:
        self._reachable("logs")
        answer = self.scenario["logs"].get(f"{namespace}/{pod}")
        if answer is None or isinstance(answer, dict):
            raise KubeError((answer or {}).get("error", f"no logs recorded for {pod}"))
        return str(answer)

    def exec(self, pod: str, namespace: str, command: Sequence[str]) -> tuple[int, str, str]:
        self._reachable("exec")
        self.commands.append((pod, list(command)))
        line = " ".join(command)
        for entry in self.scenario["exec"]:
            if entry["pod"] == pod and entry["match"] in line:
                return int(entry["rc"]), str(entry["stdout"]), str(entry["stderr"])
        raise KubeError(f"exec in {namespace}/{pod}: no recorded answer for {line!r}")

    def wait_pod(self, pod: str, namespace: str, condition: PodCondition,
                 timeout: float) -> None:
        self._reachable("wait_pod")
        if pod in self.scenario.get("wait_errors", {}):
            raise KubeError(self.scenario["wait_errors"][pod])


def set_exec(scenario: dict[str, Any], pod: str, match: str, rc: int, stdout: str = "",
             stderr: str = "") -> None:
    """Replace the recorded answer for one command."""
    for entry in scenario["exec"]:
        if entry["pod"] == pod and entry["match"] == match:
            entry.update(rc=rc, stdout=stdout, stderr=stderr)
            return
    raise AssertionError(f"no recorded exec {pod} {match}")


def proof_pods_key(runtime: str) -> str:
    return f"pods -n sandbox-proof -l batch.kubernetes.io/job-name=sandbox-proof-{runtime}"


def proof_pod(scenario: dict[str, Any], runtime: str) -> dict[str, Any]:
    pod: dict[str, Any] = scenario["get"][proof_pods_key(runtime)]["items"][0]
    return pod


def proof_log(scenario: dict[str, Any], runtime: str) -> str:
    """The `logs` key of a runtime's proof pod ("<namespace>/<pod>")."""
    meta = proof_pod(scenario, runtime)["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def node_key(scenario: dict[str, Any], runtime: str) -> str:
    return f"nodes {proof_pod(scenario, runtime)['spec']['nodeName']}"


def probed_url(scenario: dict[str, Any], fragment: str) -> str:
    """The URL verify's probe pod was recorded fetching, found by a fragment of it."""
    (match,) = [e["match"] for e in scenario["exec"]
                if e["pod"].startswith("verify-probe-") and fragment in e["match"]]
    return str(match)
