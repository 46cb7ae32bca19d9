"""Drive a containerd's CRI with crictl: pods on the host network unless given a pod network."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CRI_TIMEOUT_SECONDS = 60
NETWORK_POD = 0  # CRI NamespaceMode.POD: the pod's own network namespace (needs a CNI config)
NETWORK_NODE = 2  # CRI NamespaceMode.NODE: the pod shares the host's network namespace


class CriError(RuntimeError):
    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"crictl {' '.join(args)} failed ({returncode}):\n{stderr.strip()}")
        self.stderr = stderr
        self.returncode = returncode


@dataclass(frozen=True)
class RunningContainer:
    pod_id: str
    container_id: str
    handler: str


@dataclass
class Crictl:
    binary: Path
    endpoint: str
    workdir: Path

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "crictl.yaml"
        self.config.write_text(
            f"runtime-endpoint: {self.endpoint}\nimage-endpoint: {self.endpoint}\n"
            f"timeout: {CRI_TIMEOUT_SECONDS}\n"
        )

    def run(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.binary), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise CriError(list(args), proc.returncode, proc.stderr)
        return proc

    def info(self) -> dict[str, Any]:
        return dict(json.loads(self.run("info", "--output", "json").stdout))

    def wait_runtime_ready(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = self.info()
                conditions = info.get("status", {}).get("conditions", [])
                if any(c.get("type") == "RuntimeReady" and c.get("status") for c in conditions):
                    return info
            except (CriError, json.JSONDecodeError):
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRI RuntimeReady not reported within {timeout}s")
            time.sleep(0.5)

    def wait_image(self, ref: str, timeout: float = 30) -> None:
        """ctr-imported images reach the CRI image store asynchronously; wait for them."""
        deadline = time.monotonic() + timeout
        while self.run("inspecti", ref, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"image {ref} not visible through the CRI after {timeout}s")
            time.sleep(0.3)

    def run_pod(self, name: str, handler: str, network: int = NETWORK_NODE) -> tuple[str, Path]:
        uid = uuid.uuid4().hex[:12]
        logs = self.workdir / "pod-logs" / f"{name}-{uid}"
        logs.mkdir(parents=True, exist_ok=True)
        pod = {
            "metadata": {"name": name, "namespace": "default", "uid": uid, "attempt": 0},
            "log_directory": str(logs),
            "linux": {"security_context": {"namespace_options": {"network": network}}},
        }
        pod_path = self.workdir / f"pod-{name}-{uid}.json"
        pod_path.write_text(json.dumps(pod))
        pod_id = self.run("runp", "--runtime", handler, str(pod_path)).stdout.strip()
        return pod_id, pod_path

    def create_and_start(
        self,
        pod_id: str,
        pod_path: Path,
        image: str,
        command: list[str],
        mounts: Mapping[str, Path] | None = None,
    ) -> str:
        """Create and start container "main"; `mounts` bind-mounts host folders (container
        path -> host path) read-write, as the kubelet does for an emptyDir."""
        ctr = {
            "metadata": {"name": "main", "attempt": 0},
            "image": {"image": image},
            "command": command,
            "log_path": "main.log",
            "linux": {},
            "mounts": [{"container_path": c, "host_path": str(h)}
                       for c, h in sorted((mounts or {}).items())],
        }
        ctr_path = pod_path.with_name(pod_path.stem + "-main.json")
        ctr_path.write_text(json.dumps(ctr))
        cid = self.run("create", "--no-pull", pod_id, str(ctr_path), str(pod_path)).stdout
        cid = cid.strip()
        self.run("start", cid)
        return cid

    def exec(self, container_id: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run argv in the container; returns the completed process, never raises on exit code."""
        return self.run("exec", container_id, *argv, check=False, timeout=120)

    def inspect_pod(self, pod_id: str) -> dict[str, Any]:
        return dict(json.loads(self.run("inspectp", "--output", "json", pod_id).stdout))

    def remove_pod(self, pod_id: str) -> None:
        self.run("stopp", pod_id, check=False)
        self.run("rmp", "--force", pod_id, check=False)

    def remove_all_pods(self) -> None:
        self.run("rmp", "--force", "--all", check=False)

    @contextlib.contextmanager
    def container(
        self, handler: str, image: str, name: str = "probe"
    ) -> Iterator[RunningContainer]:
        """A pod with `handler` holding one long-running container; removed on exit."""
        pod_id, pod_path = self.run_pod(name, handler)
        try:
            cid = self.create_and_start(pod_id, pod_path, image, ["/bin/sleep", "3600"])
            yield RunningContainer(pod_id=pod_id, container_id=cid, handler=handler)
        finally:
            self.remove_pod(pod_id)
