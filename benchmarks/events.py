"""Each resource's operation as a span, from the CLI's engine event log (`--event-log`), and
the critical path through them. Shared by benchmarks/up_stages.py and tests/e2e."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Span:
    name: str  # the resource's name (the last part of its URN)
    type: str
    op: str
    start: int  # unix seconds, as the engine stamps its events
    end: int
    urn: str = ""
    start_seq: int = 0  # the engine's event sequence numbers: a total order within a second
    end_seq: int = 0
    failed: bool = False
    custom: bool = True  # False for component resources (they do no work of their own)

    @property
    def seconds(self) -> int:
        return self.end - self.start


def spans(event_log: Path) -> list[Span]:
    """One span per resource step: from its pre-event to its outputs (or failure) event."""
    started: dict[str, tuple[int, int, Mapping[str, Any]]] = {}
    out: list[Span] = []
    for line in event_log.read_text().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        ts, seq = int(event.get("timestamp", 0)), int(event.get("sequence", 0))
        if "resourcePreEvent" in event:
            meta = event["resourcePreEvent"]["metadata"]
            started[meta["urn"]] = (ts, seq, meta)
            continue
        for kind in ("resOutputsEvent", "resOpFailedEvent"):
            if kind in event:
                meta = event[kind]["metadata"]
                begun = started.pop(meta["urn"], None)
                if begun is not None:
                    # The engine omits `custom` when false (components); a log without
                    # the resource's state says nothing either way.
                    new = begun[2].get("new")
                    custom = bool(new.get("custom")) if new else True
                    out.append(Span(meta["urn"].rsplit("::", 1)[1], meta["type"], meta["op"],
                                    begun[0], ts, meta["urn"], begun[1], seq,
                                    kind == "resOpFailedEvent", custom))
    return out


def stage(span: Span) -> str:
    """What a resource is in the cluster's build: VM create, boot + cloud-init, a node step,
    kubeadm init, a join, a Kubernetes object..."""
    if span.type == "libvirt:index/domain:Domain":
        return "VM create"
    if span.type.startswith("libvirt:"):
        return "libvirt " + span.type.rsplit(":", 1)[-1].lower()
    if span.type == "command:remote:Command":
        if span.name.endswith("-wait-cloud-init"):
            return "boot + cloud-init"  # one step: SSH up, then cloud-init's end
        if span.name.endswith("-kubeadm-init"):
            return "kubeadm init"
        if span.name.endswith("-kubeadm-join"):
            return "kubeadm join"
        return "node step"
    if span.type == "command:local:Command":
        return "local step"
    if span.type.startswith("kubernetes:"):
        return "Kubernetes object"
    if span.type.startswith("pulumi:providers:"):
        return "provider"
    if span.type.split(":", 1)[0] in ("tls", "random"):
        return "keys and secrets"
    return "component" if not span.custom else span.type


@dataclass(frozen=True)
class PathStep:
    span: Span
    waited: int  # seconds between the end of the previous step and this one's start


def dependencies_from_state(state: Mapping[str, Any]) -> dict[str, set[str]]:
    """URN -> what it waited for, from `pulumi stack export`: its dependencies and provider,
    a component standing for everything under it (as the engine waits for them)."""
    resources = state["deployment"]["resources"]
    children: dict[str, list[str]] = {}
    for r in resources:
        if r.get("parent"):
            children.setdefault(r["parent"], []).append(r["urn"])

    def below(urn: str) -> Iterator[str]:
        for child in children.get(urn, []):
            yield child
            yield from below(child)

    deps: dict[str, set[str]] = {}
    for r in resources:
        direct = set(r.get("dependencies") or [])
        if r.get("provider"):
            direct.add(r["provider"].rsplit("::", 1)[0])
        deps[r["urn"]] = {u for d in direct for u in (d, *below(d))}
    return deps


def critical_path(spans_: list[Span],
                  deps: Mapping[str, set[str]] | None = None) -> list[PathStep]:
    """The chain that ended last, walked back from the last span to finish.

    With `deps` (from the stack's state) each step's predecessor is what it waited for that
    finished last: the step that decided when it could start. Without them, the chain is
    the one with the most work among spans that each finished before the next started (an
    upper bound: parallel work that only happened to run in between is passed over when a
    longer sequence of work leads to the same step)."""
    work = sorted((s for s in spans_ if s.custom), key=lambda s: s.end_seq)
    if not work:
        return []
    prev: dict[int, Span | None] = {}
    if deps is not None:
        for s in work:
            allowed = deps.get(s.urn, set())
            before = [p for p in work if p.end_seq < s.start_seq and p.urn in allowed]
            prev[id(s)] = max(before, key=lambda p: p.end_seq) if before else None
    else:
        busy: dict[int, int] = {}
        for s in work:  # in order of their end: every possible predecessor is done first
            before = [p for p in work if p.end_seq < s.start_seq]
            best = max(before, key=lambda p: (busy[id(p)], p.end_seq)) if before else None
            prev[id(s)] = best
            busy[id(s)] = s.seconds + (busy[id(best)] if best else 0)
    chain: list[Span] = []
    current: Span | None = work[-1]
    while current is not None:
        chain.append(current)
        current = prev[id(current)]
    chain.reverse()
    return [PathStep(s, max(0, s.start - chain[i - 1].end) if i else 0)
            for i, s in enumerate(chain)]
