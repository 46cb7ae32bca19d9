"""The real-component layers test the versions the program deploys."""

from __future__ import annotations

import re

import pytest

from components.spec import DEFAULTS
from tests.apiserver.program import stack_spec
from tests.build_tools import BUILD_SCRIPT


def pinned(name: str) -> str:
    match = re.search(rf'^{name}="([^"]+)"$', BUILD_SCRIPT.read_text(), re.MULTILINE)
    assert match is not None, f"{name} is not pinned in {BUILD_SCRIPT.name}"
    return match.group(1)


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_the_api_server_layer_runs_the_stacks_kubernetes_version(stack: str) -> None:
    assert pinned("KUBERNETES_VERSION") == f"v{stack_spec(stack).kubernetes.version}"


def test_the_api_server_layer_runs_the_default_kubernetes_version() -> None:
    assert pinned("KUBERNETES_VERSION") == f"v{DEFAULTS['kubernetes']['version']}"
