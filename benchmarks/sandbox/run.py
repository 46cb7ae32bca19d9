"""The measurement plan: every variant in each round, in a rotating order, so that the
machine's load drifts over all variants alike and the ratios hold on a noisy machine."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from . import measure
from .procs import Usage
from .setup import Bench, Variant

T = TypeVar("T")
SETTLE_SECONDS = 3.0  # after starting idle pods, before reading their memory


@dataclass(frozen=True)
class Counts:
    starts: int = 15  # pod starts per variant
    rounds: int = 10  # workload runs per variant
    idle_pods: int = 10
    idle_seconds: float = 20.0  # window for the idle pods' CPU
    syscalls: int = 50_000
    files: int = 200
    file_bytes: int = 4096
    requests: int = 200


@dataclass
class Results:
    variants: tuple[Variant, ...]
    counts: Counts
    client: list[float] = field(default_factory=list)
    starts: dict[str, list[measure.PodStart]] = field(default_factory=dict)
    idle_one: dict[str, Usage] = field(default_factory=dict)
    idle_many: dict[str, Usage] = field(default_factory=dict)
    idle_cpu_millicores: dict[str, float] = field(default_factory=dict)  # per pod
    after_work: dict[str, Usage] = field(default_factory=dict)
    work: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    processes: dict[str, list[str]] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # 1-minute load average at each phase


def rotated(items: Sequence[T], turn: int) -> list[T]:
    k = turn % len(items) if items else 0
    return [*items[k:], *items[:k]]


def interleaved(variants: Sequence[Variant], rounds: int,
                each: Callable[[Variant, int], None]) -> None:
    for turn in range(rounds):
        for variant in rotated(variants, turn):
            each(variant, turn)


def workloads(counts: Counts) -> dict[str, tuple[str, ...]]:
    files = (str(counts.files), str(counts.file_bytes))
    return {
        "syscalls": ("syscalls", str(counts.syscalls)),
        "files in root": ("files", measure.ROOT_DIR, *files),
        "files in bind mount": ("files", measure.DATA_MOUNT, *files),
        "loopback HTTP": ("http", str(counts.requests)),
    }


def run(bench: Bench, variants: tuple[Variant, ...], counts: Counts, workdir: Path,
        log: Callable[[str], None]) -> Results:
    res = Results(variants, counts)
    res.load.append(measure.load_average())
    node0 = bench.node(variants[0])
    res.client = [measure.client_seconds(node0) for _ in range(10)]

    log(f"pod start and removal: {counts.starts} per variant")
    for v in variants:
        res.starts[v.name] = []
    interleaved(variants, counts.starts, lambda v, i: res.starts[v.name].append(
        measure.pod_start(bench.node(v), v, f"start-{i}")))
    res.load.append(measure.load_average())

    log(f"idle pods: 1, then {counts.idle_pods} per variant")
    idle: dict[str, list[str]] = {v.name: [] for v in variants}
    interleaved(variants, 1, lambda v, i: idle[v.name].append(
        measure.start_idle(bench.node(v), v, "idle-0")))
    time.sleep(SETTLE_SECONDS)
    for v in variants:
        res.idle_one[v.name] = measure.idle_usage(bench.node(v), idle[v.name])
        res.processes[v.name] = measure.process_names(bench.node(v), idle[v.name][0])
    interleaved(variants, counts.idle_pods - 1, lambda v, i: idle[v.name].append(
        measure.start_idle(bench.node(v), v, f"idle-{i + 1}")))
    time.sleep(SETTLE_SECONDS)
    before = {v.name: measure.idle_usage(bench.node(v), idle[v.name]) for v in variants}
    time.sleep(counts.idle_seconds)
    for v in variants:
        after = measure.idle_usage(bench.node(v), idle[v.name])
        res.idle_many[v.name] = after
        cpu = after.cpu_seconds - before[v.name].cpu_seconds
        res.idle_cpu_millicores[v.name] = 1000 * cpu / counts.idle_seconds / len(idle[v.name])
    for v in variants:
        for pod_id in idle[v.name]:
            bench.node(v).cri.remove_pod(pod_id)
    res.load.append(measure.load_average())

    log(f"workloads: {counts.rounds} rounds per variant")
    pods = {v.name: measure.start_work_pod(bench.node(v), v, "work",
                                           workdir / "data" / v.node_key / v.handler)
            for v in variants}
    plan = workloads(counts)
    res.work = {v.name: {w: [] for w in plan} for v in variants}
    for v in variants:  # warm-up, not recorded: first touch of the binary and page cache
        for args in plan.values():
            measure.probe(pods[v.name], *args)

    def one_round(v: Variant, _: int) -> None:
        for name, args in plan.items():
            res.work[v.name][name].append(measure.probe(pods[v.name], *args))

    interleaved(variants, counts.rounds, one_round)
    for v in variants:
        res.after_work[v.name] = measure.idle_usage(bench.node(v), [pods[v.name].pod_id])
        bench.node(v).cri.remove_pod(pods[v.name].pod_id)
    res.load.append(measure.load_average())
    return res
