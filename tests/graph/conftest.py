from __future__ import annotations

import pytest

from tests.graph.harness import Graph, run_program, stack_config

_cache: dict[str, Graph] = {}


def stack_graph(stack: str) -> Graph:
    if stack not in _cache:
        _cache[stack] = run_program(stack_config(stack), stack)
    return _cache[stack]


@pytest.fixture(params=["dev", "ha"])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def graph(stack: str) -> Graph:
    return stack_graph(stack)
