"""Stage durations from an engine event log (the format of `pulumi up --event-log`)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.events import Span, spans, stage_table

URN = "urn:pulumi:lab::sandboxed-k8s::command:remote:Command::{}"


def event(ts: int, kind: str, name: str, op: str = "create") -> str:
    meta = {"op": op, "urn": URN.format(name), "type": "command:remote:Command"}
    return json.dumps({"sequence": ts, "timestamp": ts, kind: {"metadata": meta}})


def test_each_step_spans_its_pre_event_to_its_outputs_or_failure(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text("\n".join([
        json.dumps({"sequence": 0, "timestamp": 100, "preludeEvent": {"config": {}}}),
        event(100, "resourcePreEvent", "master-preflight"),
        event(130, "resourcePreEvent", "master-kubeadm-init"),
        event(140, "resOutputsEvent", "master-preflight"),
        event(1300, "resOpFailedEvent", "master-kubeadm-init"),
        event(1300, "resourcePreEvent", "never-finished"),
    ]) + "\n")
    found = spans(log)
    assert found == [
        Span("master-preflight", "command:remote:Command", "create", 100, 140),
        Span("master-kubeadm-init", "command:remote:Command", "create", 130, 1300),
    ]
    table = stage_table(found, min_seconds=60)
    assert table == ["    30 s  + 1170 s  create   master-kubeadm-init"]
