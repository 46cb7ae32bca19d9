"""Every Kubernetes object the graph declares validates against the pinned version's schema."""

from __future__ import annotations

import kubernetes_validate

from components.spec import load
from tests.graph.harness import Graph, stack_config


def manifest(typ: str, inputs: dict[str, object]) -> dict[str, object]:
    _, group_version, kind = typ.split(":")
    group, _, version = group_version.rpartition("/")
    api_version = version if group == "core" else f"{group}/{version}"
    return {"apiVersion": api_version, "kind": kind, **inputs}


def test_kubernetes_objects_match_the_schema(graph: Graph, stack: str) -> None:
    minor = load({k.split(":", 1)[1]: v for k, v in stack_config(stack).items()},
                 stack).kubernetes.minor
    objects = [r for r in graph.resources if r.type.startswith("kubernetes:")]
    assert len(objects) >= 8
    for r in objects:
        kubernetes_validate.validate(manifest(r.type, r.inputs), minor, strict=True)


def test_schema_check_can_fail() -> None:
    bad = manifest("kubernetes:node.k8s.io/v1:RuntimeClass",
                   {"metadata": {"name": "x"}, "handler": "runsc", "scheduling": {"bogus": 1}})
    try:
        kubernetes_validate.validate(bad, "1.34", strict=True)
    except kubernetes_validate.ValidationError:
        return
    raise AssertionError("an unknown field passed strict validation")
