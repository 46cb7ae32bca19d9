"""One measurement each: a pod's start and removal, an idle pod, a workload in a running pod.

Pods are driven through crictl, as in the node tests; every CRI call therefore includes one
crictl process start, the same for every handler (`client_seconds` measures it)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tests.node.cri import NETWORK_POD
from tests.node.nodes import Node

from .procs import Usage, pod_usage
from .procs import process_names as _process_names
from .setup import PROBE_IN_IMAGE, Variant

EXIT_POLL_SECONDS = 0.02
DATA_MOUNT = "/data"  # the emptyDir-like bind mount of the workload pod
ROOT_DIR = "/var"  # a folder of the image's root filesystem (not /tmp: runsc may mount tmpfs)


@dataclass(frozen=True)
class PodStart:
    sandbox: float  # RunPodSandbox returned
    running: float  # CreateContainer + StartContainer returned
    exited: float  # the container (/bin/true) reported exited
    removal: float  # StopPodSandbox + RemovePodSandbox
    cpu_seconds: float  # CPU of the pod's processes up to the exit (runtime invocations too)


@dataclass(frozen=True)
class WorkPod:
    variant: Variant
    node: Node
    pod_id: str
    container_id: str
    data_dir: Path


def client_seconds(node: Node) -> float:
    start = time.perf_counter()
    node.cri.run("version")
    return time.perf_counter() - start


def _state(node: Node, container_id: str) -> str:
    status = json.loads(node.cri.run("inspect", "--output", "json", container_id).stdout)
    return str(status["status"]["state"])


def pod_start(node: Node, variant: Variant, name: str) -> PodStart:
    t0 = time.perf_counter()
    pod_id, pod_path = node.cri.run_pod(name, variant.handler, NETWORK_POD)
    try:
        t1 = time.perf_counter()
        cid = node.cri.create_and_start(pod_id, pod_path, node.image, ["/bin/true"])
        t2 = time.perf_counter()
        while _state(node, cid) != "CONTAINER_EXITED":
            if time.perf_counter() - t2 > 60:
                raise TimeoutError(f"{variant.name}: /bin/true still running after 60 s")
            time.sleep(EXIT_POLL_SECONDS)
        t3 = time.perf_counter()
        cpu = pod_usage(pod_id, node.daemon.socket).cpu_seconds
    finally:
        t4 = time.perf_counter()
        node.cri.remove_pod(pod_id)
    t5 = time.perf_counter()
    return PodStart(t1 - t0, t2 - t0, t3 - t0, t5 - t4, cpu)


def start_idle(node: Node, variant: Variant, name: str) -> str:
    """A pod whose one container sleeps; returns the pod id."""
    pod_id, pod_path = node.cri.run_pod(name, variant.handler, NETWORK_POD)
    node.cri.create_and_start(pod_id, pod_path, node.image, ["/bin/sleep", "3600"])
    return pod_id


def idle_usage(node: Node, pod_ids: list[str]) -> Usage:
    total = Usage()
    for pod_id in pod_ids:
        total += pod_usage(pod_id, node.daemon.socket)
    return total


def start_work_pod(node: Node, variant: Variant, name: str, data_dir: Path) -> WorkPod:
    data_dir.mkdir(parents=True, exist_ok=True)
    pod_id, pod_path = node.cri.run_pod(name, variant.handler, NETWORK_POD)
    cid = node.cri.create_and_start(pod_id, pod_path, node.image, ["/bin/sleep", "3600"],
                                    mounts={DATA_MOUNT: data_dir})
    return WorkPod(variant, node, pod_id, cid, data_dir)


def probe(pod: WorkPod, *args: str) -> float:
    """Run the probe in the pod; the seconds the work took, as the probe timed it inside."""
    proc = pod.node.cri.exec(pod.container_id, PROBE_IN_IMAGE, *args)
    if proc.returncode != 0:
        raise RuntimeError(f"{pod.variant.name}: probe {' '.join(args)} failed "
                           f"({proc.returncode}): {proc.stderr.strip()}")
    return int(proc.stdout.strip().splitlines()[-1]) / 1e9


def process_names(node: Node, pod_id: str) -> list[str]:
    return _process_names(pod_id, node.daemon.socket)


def load_average() -> float:
    return os.getloadavg()[0]
