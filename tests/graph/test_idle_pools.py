"""A sandbox pool scaled to count 0 is kept for later, but nothing waits for its nodes."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest

from components.spec import load
from components.spec.artifacts import stack_fetches
from tests.graph.harness import Graph, run_program, stack_config
from tests.graph.test_graph import DOMAIN, JOB, POD, RUNTIME_CLASS
from tests.graph.test_guardrails import VAP


def idle(stack: str, pool: str) -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(stack_config(stack))
    for p in config["sandboxed-k8s:pools"]:
        if p["name"] == pool:
            p.update(count=0, names=[])
    return config


def run_warned(config: dict[str, Any], stack: str,
               monkeypatch: pytest.MonkeyPatch) -> tuple[Graph, list[str]]:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    return run_program(config, stack), warnings


def test_an_idle_gvisor_pool_declares_no_runtime_class_sample_or_proof(
        monkeypatch: pytest.MonkeyPatch) -> None:
    graph, warnings = run_warned(idle("dev", "gvisor"), "dev", monkeypatch)
    assert graph.of_type(RUNTIME_CLASS) == []
    assert graph.of_type(POD) == []
    assert graph.of_type(JOB) == []
    assert "worker1" not in {d.name for d in graph.of_type(DOMAIN)}
    assert graph.stack_outputs["runtimeClasses"][0] == []
    # Tenant pods are denied (no sandbox class to name) rather than left Pending.
    [pods] = [p for p in graph.of_type(VAP) if p.name == "tenant-pods"]
    assert pods.inputs["spec"]["validations"][0]["expression"].endswith("in []")
    assert warnings == [
        "gvisor: every pool that runs it has count 0 (pools[gvisor]), so its RuntimeClass, "
        "sample pod and proof Job are left out until one has nodes",
        "tenants: no sandbox pool has nodes, so no tenant pod can run (each must name a "
        "sandbox RuntimeClass)"]


def test_an_idle_kata_pool_leaves_gvisor_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    graph, warnings = run_warned(idle("ha", "kata"), "ha", monkeypatch)
    assert [r.name for r in graph.of_type(RUNTIME_CLASS)] == ["gvisor"]
    assert [p.name for p in graph.of_type(POD)] == ["nginx-gvisor"]
    assert len(graph.of_type(JOB)) == 1
    assert graph.stack_outputs["runtimeClasses"][0] == ["gvisor"]
    assert [w.split(":")[0] for w in warnings] == ["kata"]


def test_an_idle_pool_fetches_nothing_of_its_sandbox() -> None:
    config = {k.split(":", 1)[1]: v for k, v in idle("ha", "kata").items()}
    spec = load(config, "ha")
    assert spec.enabled_sandboxes == ("gvisor",)
    assert spec.pools_with("kata") == ()
    assert not [f for f in stack_fetches(spec) if "kata" in f.source]
