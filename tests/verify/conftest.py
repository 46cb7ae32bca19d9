from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.verify.fake import load

_HEALTHY = load("healthy")


@pytest.fixture
def healthy() -> dict[str, Any]:
    """The recorded healthy cluster, fresh for each test to modify."""
    return copy.deepcopy(_HEALTHY)
