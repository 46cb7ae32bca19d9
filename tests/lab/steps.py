"""A node's remote steps exactly as the program declares them (``__main__.py`` under Pulumi
mocks, tests/graph/harness.py), for a stack whose downloads point at the lab mirror: the
``create`` command and ``stdin`` pulumi-command would send, in the program's order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

import components.node
from tests.graph.harness import Graph, run_program, stack_config

from .mirror import Mirror, stack_sections

PROJECT_KEY = "sandboxed-k8s:"
# The test image's disk is 4 GB; the program's 5 GiB minimum is for real nodes.
TEST_MIN_FREE_GIB = 1


@dataclass(frozen=True)
class Step:
    name: str
    create: str
    stdin: str


def mirrored_config(stack: str, mirror: Mirror, files_url: str) -> dict[str, Any]:
    """stacks/Pulumi.<stack>.yaml with every node download taken from the lab mirror."""
    config = dict(stack_config(stack))
    for section, values in stack_sections(mirror, files_url).items():
        config[PROJECT_KEY + section] = {**(config.get(PROJECT_KEY + section) or {}), **values}
    return config


def node_steps(config: Mapping[str, Any], stack: str, node: str,
               suffixes: Sequence[str]) -> list[Step]:
    """The node's steps named by `suffixes`, checked to be in an order the program's
    dependencies allow (a step never before one it depends on)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(components.node, "MIN_FREE_GIB", TEST_MIN_FREE_GIB)
        graph: Graph = run_program(config, stack)
    regs = [graph.named(f"{node}-{s}", "command:remote:Command") for s in suffixes]
    for i, reg in enumerate(regs):
        later = [r.name for r in regs[i + 1:] if graph.depends_on(reg, r)]
        assert not later, f"{reg.name} depends on {later}, which come after it"
    return [Step(r.name, str(r.inputs["create"]), str(r.inputs["stdin"])) for r in regs]
