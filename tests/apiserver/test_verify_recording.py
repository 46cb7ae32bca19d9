"""tests/verify replays answers recorded from a real API server; they must still be what the
server says today, for the objects the program declares today."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver.record import RECORDED, record

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]

_RUN_SPECIFIC = (
    (re.compile(r"(sandbox-proof-(?:gvisor|kata))-[a-z0-9]{5}\b"), r"\1-POD"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "TIME"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "UID"),
)


def normalized(scenario: dict[str, Any]) -> Any:
    """Generated names, times and UIDs replaced: what differs between two recordings."""
    text = json.dumps({k: v for k, v in scenario.items() if k != "_comment"}, sort_keys=True)
    for pattern, replacement in _RUN_SPECIFIC:
        text = pattern.sub(replacement, text)
    return json.loads(text)


def test_recorded_verify_answers_are_current(tmp_path: Path) -> None:
    fresh = record(tmp_path)
    committed = json.loads((RECORDED / "healthy.json").read_text())
    assert normalized(fresh) == normalized(committed), (
        "tests/verify/recorded/healthy.json is stale: run tools/record-verify-responses")
