"""The program's remote steps for a gVisor worker, rendered under mocks with every download
pointed at the local release mirror, and run over SSH as pulumi-command would run them."""

from __future__ import annotations

import base64
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

import components.node
from tests.graph.harness import Graph, run_program, stack_config

from .conftest import TIMINGS
from .harness import BootedVM
from .releases import RecordingServer, ReleaseMirror
from .ssh import RunResult

STACK = "dev"  # stacks/Pulumi.dev.yaml: worker1 is its gVisor worker
NODE = "worker1"
PROJECT_KEY = "sandboxed-k8s:"
# The steps of NodeRuntime this test runs (kubernetes-tools needs kubeadm: not here).
STEP_SUFFIXES = ("wait-cloud-init", "preflight", "pod-firewall", "containerd", "gvisor",
                 "containerd-config")
SCRIPT_OF = {
    "wait-cloud-init": "wait-cloud-init.sh",
    "preflight": "preflight.sh",
    "pod-firewall": "node-firewall.sh",
    "containerd": "install-containerd.sh",
    "gvisor": "install-gvisor.sh",
    "containerd-config": "configure-containerd.sh",
}
# The test image's disk is 4 GB; the program's 5 GiB minimum is for real nodes.
TEST_MIN_FREE_GIB = 1
STEP_TIMEOUT_S = 1200.0


@dataclass(frozen=True)
class ProgramStep:
    suffix: str
    create: str
    stdin: str

    @property
    def script(self) -> str:
        return SCRIPT_OF[self.suffix]

    def exported(self) -> dict[str, str]:
        """The parameters at the top of stdin (``export NAME=value``), values still quoted."""
        out: dict[str, str] = {}
        for line in self.stdin.splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                out[name] = value
        return out


@dataclass(frozen=True)
class ProgramPlan:
    steps: dict[str, ProgramStep]
    order: list[str]  # a topological order of the steps by the program's dependencies
    depends: dict[str, set[str]]  # step -> the other steps it transitively waits for


def mirror_config(mirror: ReleaseMirror, server: RecordingServer,
                  runsc_flags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """stacks/Pulumi.dev.yaml with every node download pointed at the local mirror."""
    config = dict(stack_config(STACK))
    config[PROJECT_KEY + "containerd"] = {
        "version": mirror.containerd.version, "sha256": mirror.containerd.sha256,
        "baseUrl": server.guest_url("containerd")}
    config[PROJECT_KEY + "runc"] = {
        "version": mirror.runc.version, "sha256": mirror.runc.sha256,
        "baseUrl": server.guest_url("runc")}
    config[PROJECT_KEY + "cniPlugins"] = {
        "version": mirror.cni_plugins.version, "sha256": mirror.cni_plugins.sha256,
        "baseUrl": server.guest_url("cni-plugins")}
    gvisor = dict(config.get(PROJECT_KEY + "gvisor") or {})
    gvisor.update({
        "release": mirror.gvisor_release, "layout": "binaries",
        "runscSha512": mirror.gvisor_sha512["runsc"],
        "shimSha512": mirror.gvisor_sha512["containerd-shim-runsc-v1"],
        "baseUrl": server.guest_url("gvisor"), "platform": "systrap",
        "flags": dict(runsc_flags or {}),
    })
    config[PROJECT_KEY + "gvisor"] = gvisor
    return config


def program_plan(config: Mapping[str, Any]) -> ProgramPlan:
    """Run the program under mocks; the worker's remote steps as pulumi-command gets them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(components.node, "MIN_FREE_GIB", TEST_MIN_FREE_GIB)
        graph: Graph = run_program(config, STACK)
    regs = {s: graph.named(f"{NODE}-{s}", "command:remote:Command") for s in STEP_SUFFIXES}
    steps = {s: ProgramStep(s, str(r.inputs["create"]), str(r.inputs["stdin"]))
             for s, r in regs.items()}
    depends = {a: {b for b in STEP_SUFFIXES if b != a and graph.depends_on(regs[a], regs[b])}
               for a in STEP_SUFFIXES}
    order: list[str] = []
    while len(order) < len(STEP_SUFFIXES):
        ready = [s for s in STEP_SUFFIXES if s not in order and depends[s] <= set(order)]
        if not ready:
            raise AssertionError(f"the program's steps have a dependency cycle: {depends}")
        order.append(ready[0])
    return ProgramPlan(steps, order, depends)


@dataclass(frozen=True)
class StepRun:
    suffix: str
    result: RunResult
    seconds: float

    @property
    def log(self) -> str:
        return self.result.stdout + self.result.stderr


def run_step(vm: BootedVM, step: ProgramStep) -> StepRun:
    start = time.monotonic()
    result = vm.run(step.create, stdin=step.stdin.encode(), check=False, timeout=STEP_TIMEOUT_S)
    return StepRun(step.suffix, result, time.monotonic() - start)


def run_plan(vm: BootedVM, plan: ProgramPlan, label: str) -> dict[str, StepRun]:
    runs: dict[str, StepRun] = {}
    for suffix in plan.order:
        run = run_step(vm, plan.steps[suffix])
        runs[suffix] = run
        TIMINGS[f"{label}: {plan.steps[suffix].script}"] = run.seconds
        assert run.result.rc == 0, (
            f"{label}: {plan.steps[suffix].script} failed (rc={run.result.rc}):\n{run.log}"
        )
    return runs


def decoded_param(step: ProgramStep, name: str) -> str:
    """A base64 file parameter of a step, as the node script decodes it."""
    (value,) = shlex.split(step.exported()[name])
    return base64.b64decode(value).decode()
