"""Tables, ratios to runc, the RuntimeClass overhead derived from them, and the chart."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from benchmarks.stats import median, p90, ratio, table

from .procs import Usage
from .run import Results, workloads
from .setup import RUNC, RUNSC

# The derived overhead is the measured cost times this margin: the Sentry's own memory grows
# with what the workload keeps open (files, sockets, mappings) and nodes differ from this one.
MARGIN = 1.5
MEMORY_STEP_MIB = 8
CPU_STEP_MILLICORES = 10


@dataclass(frozen=True)
class Overhead:
    memory_mib: int
    cpu_millicores: int
    memory_basis: str
    cpu_basis: str


def _mib(kib: float) -> float:
    return kib / 1024


def _per_pod(usage: Usage, pods: int) -> float:
    return _mib(usage.pss_kib) / max(pods, 1)


def start_table(res: Results) -> str:
    def col(name: str, attr: str) -> list[float]:
        return [getattr(s, attr) for s in res.starts[name]]

    base_exit, base_rm = median(col(RUNC.name, "exited")), median(col(RUNC.name, "removal"))
    rows = []
    for v in res.variants:
        exited, removal = col(v.name, "exited"), col(v.name, "removal")
        rows.append([v.name, median(col(v.name, "sandbox")), median(col(v.name, "running")),
                     median(exited), p90(exited), ratio(median(exited), base_exit),
                     median(removal), p90(removal), ratio(median(removal), base_rm),
                     median(col(v.name, "cpu_seconds"))])
    return table(["variant", "RunPodSandbox s", "running s", "exited s", "exited p90",
                  "x runc", "removal s", "removal p90", "x runc", "CPU s/start"], rows)


def memory_table(res: Results) -> str:
    many = res.counts.idle_pods
    base_one = _per_pod(res.idle_one[RUNC.name], 1)
    base_many = _per_pod(res.idle_many[RUNC.name], many)
    rows = []
    for v in res.variants:
        one, per = _per_pod(res.idle_one[v.name], 1), _per_pod(res.idle_many[v.name], many)
        rows.append([v.name, one, _mib(res.idle_one[v.name].rss_kib), ratio(one, base_one),
                     per, ratio(per, base_many), res.idle_cpu_millicores[v.name],
                     _per_pod(res.after_work[v.name], 1)])
    return table(["variant", "1 idle pod PSS MiB", "RSS MiB", "x runc",
                  f"{many} idle pods PSS MiB/pod", "x runc", "idle CPU m/pod",
                  "after workloads PSS MiB"], rows)


def work_table(res: Results) -> str:
    counts = {"syscalls": res.counts.syscalls, "files in root": res.counts.files,
              "files in bind mount": res.counts.files, "loopback HTTP": res.counts.requests}
    rows = []
    for name in workloads(res.counts):
        base = median(res.work[RUNC.name][name])
        for v in res.variants:
            runs = res.work[v.name][name]
            rows.append([name, v.name, median(runs) * 1e3, p90(runs) * 1e3,
                         median(runs) / counts[name] * 1e6, ratio(median(runs), base)])
    return table(["workload", "variant", "median ms", "p90 ms", "us per op", "x runc"], rows,
                 left=2)


def _round_up(value: float, step: int) -> int:
    # Rounded first, so float noise (200.00000000003) does not add a step.
    return max(step, math.ceil(round(value / step, 6)) * step)


def derive_overhead(res: Results) -> Overhead:
    """gVisor's RuntimeClass overhead.podFixed from the default runsc variant against runc.

    Memory: the largest per-pod difference in PSS (one idle pod, each of the idle pods, the
    pod after the workloads), times MARGIN, rounded up to MEMORY_STEP_MIB.
    CPU: the larger of the sandbox's extra CPU while it starts (extra CPU seconds of a pod
    start over the time the start took) and its extra CPU when idle, times MARGIN, rounded
    up to CPU_STEP_MILLICORES. The pod cgroup's CPU limit includes the overhead, so a
    sandbox's start is then not throttled against the containers' own limits."""
    many = res.counts.idle_pods
    mem = {
        "1 idle pod": _per_pod(res.idle_one[RUNSC.name], 1) - _per_pod(res.idle_one[RUNC.name], 1),
        f"{many} idle pods": _per_pod(res.idle_many[RUNSC.name], many)
        - _per_pod(res.idle_many[RUNC.name], many),
        "after workloads": _per_pod(res.after_work[RUNSC.name], 1)
        - _per_pod(res.after_work[RUNC.name], 1),
    }
    mem_key = max(mem, key=lambda k: mem[k])
    start_cpu = (median([s.cpu_seconds for s in res.starts[RUNSC.name]])
                 - median([s.cpu_seconds for s in res.starts[RUNC.name]]))
    start_secs = median([s.exited for s in res.starts[RUNSC.name]])
    cpu = {
        "start": 1000 * start_cpu / start_secs if start_secs > 0 else 0.0,
        "idle": res.idle_cpu_millicores[RUNSC.name] - res.idle_cpu_millicores[RUNC.name],
    }
    cpu_key = max(cpu, key=lambda k: cpu[k])
    return Overhead(
        memory_mib=_round_up(mem[mem_key] * MARGIN, MEMORY_STEP_MIB),
        cpu_millicores=_round_up(cpu[cpu_key] * MARGIN, CPU_STEP_MILLICORES),
        memory_basis=f"{mem[mem_key]:.1f} MiB more PSS than runc ({mem_key}) x {MARGIN}",
        cpu_basis=(f"{cpu[cpu_key]:.0f}m more CPU than runc ({cpu_key}; start "
                   f"{cpu['start']:.0f}m, idle {cpu['idle']:.1f}m) x {MARGIN}"))


def chart(res: Results, path: Path) -> None:
    """Ratios to runc (medians), one group of bars per measurement, one bar per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    many = res.counts.idle_pods

    def metrics(name: str) -> dict[str, float]:
        starts = res.starts[name]
        out = {
            "pod start": median([s.exited for s in starts]),
            "pod removal": median([s.removal for s in starts]),
            "memory, 1 pod": _per_pod(res.idle_one[name], 1),
            f"memory/pod, {many} pods": _per_pod(res.idle_many[name], many),
        }
        out.update({w: median(runs) for w, runs in res.work[name].items()})
        return out

    base = metrics(RUNC.name)
    others = [v for v in res.variants if v != RUNC]
    labels = list(base)
    width = 0.8 / max(len(others), 1)
    fig, ax = plt.subplots(figsize=(11, 5))
    for i, v in enumerate(others):
        values = metrics(v.name)
        xs = [k + (i - (len(others) - 1) / 2) * width for k in range(len(labels))]
        ax.bar(xs, [values[m] / base[m] if base[m] else 0 for m in labels], width, label=v.name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_ylabel("ratio to runc (median; log scale)")
    ax.set_title("gVisor against runc on the same containerd, same image, same workload")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
