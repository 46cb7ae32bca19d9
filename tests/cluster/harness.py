"""One cluster of the lab stack in VMs, for the cluster layer's test files: the graph's
plan (real keys and certificates), the VMs booted with its cloud-init documents on the lab
network with the mirror at its gateway, kubectl through the namespace, and the steps run
over SSH exactly as the engine would send them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.spec import node_mac
from tests.cluster.conftest import record
from tests.cluster.network import ClusterNetwork, cluster_network
from tests.cluster.plan import ClusterPlan, KeptTlsProviders, RemoteStep, cluster_plan
from tests.lab.mirror import Mirror, serve_mirror
from tests.vm.harness import BootedVM, boot_vm, ensure_image

DISK = "12G"  # the image's 4 GB root grows to this; preflight wants 5 GiB free
STEP_TIMEOUT_S = 3600.0
# kubectl's words for a request the API server did not answer (restarting, overloaded).
UNANSWERED = ("connection refused", "TLS handshake timeout", "the server was unable to return",
              "Client.Timeout exceeded", "EOF", "context deadline exceeded",
              "the server is currently unable to handle the request")
READY_TIMEOUT_S = 3600.0


@dataclass
class Cluster:
    plan: ClusterPlan
    providers: KeptTlsProviders  # the plan's keys and certificates, kept for the next plan
    mirror: Mirror
    network: ClusterNetwork
    vms: dict[str, BootedVM]
    nodes: Mapping[str, str]  # name -> address
    kubectl: Path
    kubeconfig: Path

    def run(self, step: RemoteStep) -> Any:
        """The step's command on its node, with its stdin, as the engine runs it."""
        vm = next(self.vms[n] for n, address in self.nodes.items() if address == step.host)
        return vm.run(step.create, stdin=step.stdin.encode(), check=False,
                      timeout=STEP_TIMEOUT_S)

    def run_step(self, step: RemoteStep) -> None:
        start = time.monotonic()
        result = self.run(step)
        record(f"step {step.name}", time.monotonic() - start)
        assert result.rc == 0, f"{step.name} failed (rc={result.rc}):\n" \
                               f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"

    def kubectl_run(self, *args: str, stdin: str | None = None, check: bool = True,
                    timeout: float = 300.0, unanswered_for: float = 900.0) -> Any:
        """kubectl through the lab network. The API server of a loaded software-emulated
        control plane restarts now and then (its liveness probe times out): a request it did
        not answer is sent again for up to `unanswered_for` seconds, as the provider retries
        (every request here is a read, an exec of a read, or a server-side apply); an answer,
        refusal included, is returned at once."""
        start = time.monotonic()
        while True:
            proc = self.network.run([str(self.kubectl), "--kubeconfig", str(self.kubeconfig),
                                     *args], stdin=stdin, check=False, timeout=timeout)
            unanswered = proc.returncode != 0 and any(sign in proc.stderr
                                                      for sign in UNANSWERED)
            if not unanswered or time.monotonic() - start > unanswered_for:
                break
            time.sleep(10)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def apply(self, document: str) -> None:
        """Server-side apply as the program's field manager."""
        self.kubectl_run("apply", "--server-side", "--field-manager=sandboxed-k8s", "-f", "-",
                         stdin=document)

    def wait_for(self, what: str, jsonpath: str, expected: str,
                 timeout: float = READY_TIMEOUT_S) -> float:
        start = time.monotonic()
        last = ""
        while time.monotonic() - start < timeout:
            proc = self.kubectl_run("get", *what.split(), "-o", f"jsonpath={jsonpath}",
                                    check=False)
            last = proc.stdout.strip() or proc.stderr.strip()
            if proc.returncode == 0 and last == expected:
                return time.monotonic() - start
            time.sleep(10)
        raise AssertionError(f"{what}: {jsonpath} is {last!r}, not {expected!r}, after "
                             f"{timeout:.0f} s")


def timed(name: str) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def measure() -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            record(name, time.monotonic() - start)
    return measure()


@contextlib.contextmanager
def booted_cluster(mirror: Mirror, config: Mapping[str, Any], stack: str,
                   nodes: Mapping[str, str], shapes: Mapping[str, tuple[int, int]],
                   work: Path) -> Iterator[Cluster]:
    """`nodes`: name -> address; `shapes`: name -> (vCPUs, MiB), as the config's pools."""
    providers = KeptTlsProviders()
    plan = cluster_plan(config, stack, providers)
    image = ensure_image()
    key = work / "admin_ed25519"
    key.write_text(plan.admin_private_key)
    key.chmod(0o600)
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(plan.kubeconfig)
    kubeconfig.chmod(0o600)
    kubectl = mirror.root / mirror.file(
        f"https://dl.k8s.io/release/{mirror.versions['kubernetes_version']}"
        "/bin/linux/amd64/kubectl").path
    with contextlib.ExitStack() as stack_:
        network = stack_.enter_context(cluster_network(nodes))
        stack_.enter_context(serve_mirror(mirror, network.prefix, network.gateway))
        vms = {}
        with timed(f"boot {len(nodes)} VMs to SSH"):
            for node in nodes:
                seed = plan.cloud_init(node)
                user_data = yaml.safe_load(seed["user-data"])
                cpus, memory = shapes[node]
                vms[node] = stack_.enter_context(boot_vm(
                    image, seed["user-data"], admin_user=user_data["users"][0]["name"],
                    private_key=key, host_public_key=user_data["ssh_keys"]["ed25519_public"],
                    meta_data=seed["meta-data"], network_config=seed["network-config"],
                    workdir=work / node, memory_mb=memory, cpus=cpus, disk_size=DISK,
                    mac=node_mac(stack, node), tap=network.taps[node]))
        yield Cluster(plan, providers, mirror, network, vms, nodes, kubectl, kubeconfig)
