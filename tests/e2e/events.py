"""Durations of each resource's operation, from the CLI's engine event log (`--event-log`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Span:
    name: str  # the resource's name (the last part of its URN)
    type: str
    op: str
    start: int  # unix seconds, as the engine stamps its events
    end: int

    @property
    def seconds(self) -> int:
        return self.end - self.start


def spans(event_log: Path) -> list[Span]:
    """One span per resource step: from its pre-event to its outputs (or failure) event."""
    started: dict[str, tuple[int, Mapping[str, str]]] = {}
    out: list[Span] = []
    for line in event_log.read_text().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        ts = int(event.get("timestamp", 0))
        if "resourcePreEvent" in event:
            meta = event["resourcePreEvent"]["metadata"]
            started[meta["urn"]] = (ts, meta)
            continue
        for kind in ("resOutputsEvent", "resOpFailedEvent"):
            if kind in event:
                meta = event[kind]["metadata"]
                begun = started.pop(meta["urn"], None)
                if begun is not None:
                    out.append(Span(meta["urn"].rsplit("::", 1)[1], meta["type"], meta["op"],
                                    begun[0], ts))
    return out


def stage_table(spans_: list[Span], min_seconds: int = 5) -> list[str]:
    """Lines "<start offset> +<seconds> s  <op> <name>", slowest work visible at a glance."""
    if not spans_:
        return []
    origin = min(s.start for s in spans_)
    return [f"{s.start - origin:>6} s  +{s.seconds:>5} s  {s.op:<8} {s.name}"
            for s in sorted(spans_, key=lambda s: (s.start, s.name))
            if s.seconds >= min_seconds]
