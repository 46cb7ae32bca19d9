"""`pulumi up` time by stage, from the engine's event log.

    pulumi up --event-log events.jsonl   (needs PULUMI_DEBUG_COMMANDS=true)
    python -m benchmarks.up_stages events.jsonl [--state state.json] [--min-seconds 0]

Prints each resource's start and end (seconds from the first event) and the critical path
with durations: VM create, boot + cloud-init, each node step, kubeadm init, joins, Kubernetes
objects. With --state (`pulumi stack export` of the same stack) the path follows the stack's
real dependencies; without it, each step's predecessor is whatever finished last before it
started, which is the same wherever the engine started the step as soon as it could.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.events import PathStep, Span, critical_path, dependencies_from_state, spans, stage
from benchmarks.stats import table


def label(span: Span) -> str:
    """The resource's name; a Kubernetes object's with its kind (names repeat across kinds)."""
    if span.type.startswith("kubernetes:"):
        return f"{span.type.rsplit(':', 1)[-1]} {span.name}"
    return span.name


def resource_table(found: list[Span], min_seconds: int = 0) -> str:
    origin = min(s.start for s in found)
    rows = [[label(s), stage(s), s.op + (" FAILED" if s.failed else ""), s.start - origin,
             s.end - origin, s.seconds]
            for s in sorted(found, key=lambda s: (s.start_seq, s.name))
            if s.custom and s.seconds >= min_seconds]
    return table(["resource", "stage", "op", "start s", "end s", "seconds"], rows, left=3)


def path_table(path: list[PathStep], origin: int) -> str:
    rows = [[label(step.span), stage(step.span), step.span.start - origin,
             step.span.end - origin, step.waited, step.span.seconds] for step in path]
    return table(["resource", "stage", "start s", "end s", "waited s", "seconds"], rows,
                 left=2)


def by_stage(path: list[PathStep]) -> str:
    totals: dict[str, int] = {}
    for step in path:
        totals[stage(step.span)] = totals.get(stage(step.span), 0) + step.span.seconds
    waited = sum(step.waited for step in path)
    rows: list[list[object]] = [[k, v] for k, v in sorted(totals.items(), key=lambda kv: -kv[1])]
    rows.append(["(between steps)", waited])
    return table(["stage on the critical path", "seconds"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.up_stages",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("event_log", type=Path)
    parser.add_argument("--state", type=Path, help="`pulumi stack export` of the same stack")
    parser.add_argument("--min-seconds", type=int, default=0,
                        help="list only resources that took at least this long")
    args = parser.parse_args(argv)
    found = [s for s in spans(args.event_log) if s.custom]  # components do no work
    if not found:
        print(f"{args.event_log}: no resource operations in this event log", file=sys.stderr)
        return 1
    deps = dependencies_from_state(json.loads(args.state.read_text())) if args.state else None
    origin = min(s.start for s in found)
    path = critical_path(found, deps)
    total = max(s.end for s in found) - origin
    print(f"## Resources ({len(found)} operations, {total} s from the first to the last)")
    print(resource_table(found, args.min_seconds))
    how = "the stack's dependencies" if deps is not None else "timing alone"
    print(f"\n## Critical path ({len(path)} steps, from {how})")
    print(path_table(path, origin))
    print()
    print(by_stage(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
