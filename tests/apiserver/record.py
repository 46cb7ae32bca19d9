"""Record what `verify` reads from a cluster, from a real API server, for tests/verify.

Runs the ha stack (both sandboxes, two tenants) on a real control plane, plays the kubelets'
part through the API (Node objects, pods bound and given a status, as kubelets report them),
then runs `verify` with every API answer recorded: RuntimeClasses, Jobs' pods, nodes,
namespaces and the admission answers to its dry runs, in the server's own words. What only a
kubelet can serve (container logs, exec) comes from tests/verify/recorded/container-output.json.

    tools/record-verify-responses [--out tests/verify/recorded/healthy.json]
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components.render.guardrails import PROOF_NAMESPACE, proof_job
from components.spec import ClusterSpec, NodeSpec
from tests.apiserver.controlplane import Kubectl as TestKubectl
from tests.apiserver.stack import APISERVER_BINARIES, applied_stack, wait_for
from tests.build_tools import REPO_ROOT, run_build_script
from tests.verify.fake import get_key
from verify.checks import JOB_NAME_LABEL, KUBELET_PORT, LISTENER_PORT, TOKEN_PATH, run_checks
from verify.client import KubeClient, Target, api_client
from verify.kube import ApiStatus, Obj

RECORDED = REPO_ROOT / "tests" / "verify" / "recorded"
STACK = "ha"
RUN_ID = "test"
NODE_KERNEL = "6.1.0-41-amd64"  # Debian 12's kernel, what a node reports
# Fields that differ on every run and that verify never reads.
VOLATILE = ("uid", "resourceVersion", "managedFields", "generation")


def trimmed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: trimmed(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [trimmed(v) for v in value]
    return value


class FakeKubelets:
    """What kubelets would write: Node objects, pod bindings and pod status."""

    def __init__(self, kubectl: TestKubectl, spec: ClusterSpec) -> None:
        self.kubectl = kubectl
        self.spec = spec
        self.pod_ips = (str(ip) for ip in ipaddress.ip_network("10.244.1.0/24").hosts())

    def register_nodes(self) -> None:
        for node in self.spec.nodes:
            taints = [{"key": t.key, "value": t.value, "effect": t.effect}
                      for t in node.pool.node_taints]
            if node.pool.is_control_plane:
                taints.append({"key": "node-role.kubernetes.io/control-plane",
                               "effect": "NoSchedule"})
            labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux",
                      **node.pool.node_labels}
            self.kubectl.run("create", "-f", "-", stdin=json.dumps({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node.name, "labels": labels},
                "spec": {"taints": taints}}))
            self._status("node", node.name, None, {
                "addresses": [{"type": "InternalIP", "address": str(node.ip)},
                              {"type": "Hostname", "address": node.name}],
                "nodeInfo": {"kernelVersion": NODE_KERNEL,
                             "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "containerRuntimeVersion":
                                 f"containerd://{self.spec.containerd.version}",
                             "kubeletVersion": f"v{self.spec.kubernetes.version}"}})

    def node_for(self, runtime: str) -> NodeSpec:
        return next(n for n in self.spec.nodes if runtime in n.pool.runtimes)

    def run_pod(self, name: str, namespace: str, runtime: str, phase: str) -> str:
        """Bind the pod to a node of its runtime's pool and report it `phase`; its IP."""
        node = self.node_for(runtime)
        self.kubectl.run("create", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node.name}}))
        ip = next(self.pod_ips)
        ready = "True" if phase == "Running" else "False"
        self._status("pod", name, namespace, {
            "phase": phase, "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": str(node.ip),
            "conditions": [{"type": "Ready", "status": ready}]})
        return ip

    def finish_proof_jobs(self) -> None:
        for runtime in self.spec.enabled_sandboxes:
            job = proof_job(runtime)["metadata"]["name"]
            selector = f"{JOB_NAME_LABEL}={job}"
            wait_for(f"a pod of Job {job}", functools.partial(self._job_pods, selector))
            (pod,) = self._job_pods(selector)
            self.run_pod(pod["metadata"]["name"], PROOF_NAMESPACE, runtime, "Succeeded")

    def _job_pods(self, selector: str) -> list[Obj]:
        pods: list[Obj] = self.kubectl.get("pods", "-n", PROOF_NAMESPACE, "-l", selector)["items"]
        return pods

    def _status(self, kind: str, name: str, namespace: str | None, status: Obj) -> None:
        self.kubectl.run("patch", kind, name, *(["-n", namespace] if namespace else []),
                         "--subresource=status", "--type=merge",
                         "-p", json.dumps({"status": status}))


class RecordingCluster(KubeClient):
    """verify's `Cluster`, recording every answer in tests/verify/fake.py's format."""

    def __init__(self, kubeconfig: Path, kubelets: FakeKubelets, output: dict[str, Any]) -> None:
        super().__init__(api_client(Target(str(kubeconfig)), 60), 60)
        self.kubelets = kubelets
        self.output = output
        self.scenario: dict[str, Any] = {"get": {}, "logs": {}, "dry_run": {}, "exec": []}
        self.pod_ips: dict[str, str] = {}

    def get_json(self, resource: str, name: str | None = None, namespace: str | None = None,
                 selector: str | None = None) -> Obj:
        answer = super().get_json(resource, name, namespace, selector)
        self.scenario["get"][get_key(resource, name, namespace, selector)] = trimmed(answer)
        return answer

    def create(self, manifest: Obj) -> Obj:
        created = super().create(manifest)
        meta = manifest["metadata"]
        runtime = manifest["spec"]["runtimeClassName"]
        self.pod_ips[meta["name"]] = self.kubelets.run_pod(meta["name"], meta["namespace"],
                                                           runtime, "Running")
        return created

    def dry_run_create(self, manifest: Obj) -> ApiStatus | None:
        refusal = super().dry_run_create(manifest)
        self.scenario["dry_run"][manifest["metadata"]["name"]] = (
            None if refusal is None else refusal.as_json())
        return refusal

    def logs(self, pod: str, namespace: str) -> str:
        runtime = next(r for r in self.kubelets.spec.enabled_sandboxes
                       if pod.startswith(proof_job(r)["metadata"]["name"]))
        text = str(self.output["logs"][runtime])
        self.scenario["logs"][f"{namespace}/{pod}"] = text
        return text

    def exec(self, pod: str, namespace: str, command: Sequence[str]) -> tuple[int, str, str]:
        line = " ".join(command)
        url = next((w for w in command if w.startswith(("http://", "https://"))), None)
        listener_ip = next((ip for name, ip in self.pod_ips.items() if "listener" in name), None)
        for role, fragment in (("token", TOKEN_PATH), ("listener", "://127.0.0.1:"),
                               ("tenant", f"://{listener_ip}:{LISTENER_PORT}/"),
                               ("kubelet", f":{KUBELET_PORT}/"),
                               ("metadata", "://169.254.169.254"), ("dns", "nslookup")):
            if fragment in line:
                answer = self.output["exec"][role]
                match = url if url is not None else fragment
                self.scenario["exec"].append({"pod": pod, "match": match, **answer})
                return int(answer["rc"]), str(answer["stdout"]), str(answer["stderr"])
        raise AssertionError(f"no container output recorded for {line!r}")


def record(workdir: Path) -> dict[str, Any]:
    bins, _ = run_build_script("apiserver", APISERVER_BINARIES)
    applied = applied_stack(STACK, bins, workdir)
    try:
        kubelets = FakeKubelets(applied.kubectl, applied.spec)
        kubelets.register_nodes()
        kubelets.finish_proof_jobs()
        output = json.loads((RECORDED / "container-output.json").read_text())
        cluster = RecordingCluster(applied.plane.kubeconfig, kubelets, output)
        rows = run_checks(cluster, timeout=60, run_id=RUN_ID)
        failing = [(r.name, r.observed) for r in rows if r.status.value != "PASS"]
        if failing:
            raise SystemExit(f"verify did not pass on the recorded cluster: {failing}")
    finally:
        applied.plane.stop()
    return {"_comment": f"Recorded by tools/record-verify-responses from a real kube-apiserver "
                        f"{applied.spec.kubernetes.version} running the {STACK} stack's "
                        f"objects; run id {RUN_ID!r}. Logs and exec output come from "
                        f"container-output.json.", **cluster.scenario}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/record-verify-responses",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RECORDED / "healthy.json")
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="record-verify-") as tmp:
        scenario = record(Path(tmp))
    args.out.write_text(json.dumps(scenario, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
