"""`pulumi preview` of every stack in stacks/ by the real engine against a real libvirt: the
providers accept every input, and the plan holds exactly the resources the mock tests see."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.engine import REPO_ROOT, Project
from tests.graph.harness import run_program, stack_config
from tests.graph.test_graph import EXPECTED_COUNTS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

STACKS = sorted(p.name.split(".")[1] for p in (REPO_ROOT / "stacks").glob("Pulumi.*.yaml"))


def test_every_stack_has_expected_counts() -> None:
    assert set(STACKS) == set(EXPECTED_COUNTS)


@pytest.mark.parametrize("stack", STACKS)
def test_preview_plans_what_the_mocks_see(project: Project, stack: str) -> None:
    project.init_stack(stack)
    steps = project.preview_steps(stack)
    assert steps, "preview planned nothing"
    assert {s["op"] for s in steps} <= {"create", "same"}, Counter(s["op"] for s in steps)
    planned = Counter((s["newState"]["type"], s["urn"].rsplit("::", 1)[1]) for s in steps
                      if s["newState"]["type"] != "pulumi:pulumi:Stack")
    counts = Counter(typ for typ, _ in planned.elements())
    for typ, expected in EXPECTED_COUNTS[stack].items():
        assert counts[typ] == expected, typ
    # Every resource (components too) the mock layer records, by type and name.
    mocked = run_program(stack_config(stack), stack)
    assert planned == Counter((r.type, r.name) for r in mocked.resources)
