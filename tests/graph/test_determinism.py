"""Two evaluations of the same stack declare identical inputs: a second `pulumi up` is a no-op."""

from __future__ import annotations

from tests.graph.harness import run_program, stack_config


def test_two_evaluations_are_identical(stack: str) -> None:
    first = run_program(stack_config(stack), stack)
    second = run_program(stack_config(stack), stack)
    assert [r.urn for r in first.resources] != []
    a = {r.urn: (r.raw_inputs, sorted(r.dependencies)) for r in first.resources}
    b = {r.urn: (r.raw_inputs, sorted(r.dependencies)) for r in second.resources}
    assert a.keys() == b.keys()
    for urn in a:
        assert a[urn] == b[urn], urn
