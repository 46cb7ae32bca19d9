"""What a gVisor sandbox costs a pod, against runc, on real containerd: run as root.

    python -m benchmarks.sandbox_overhead [--starts 15] [--rounds 10] [--chart FILE]

Same image, same workload, every variant in one run, interleaved: runc, runsc with the
program's defaults, and runsc with one gVisor setting changed (platform ptrace, directfs off,
overlay2 root:memory; platform kvm with --kvm where /dev/kvm works). Prints the machine, its
1-minute load average, medians and p90 with ratios to runc, the RuntimeClass overhead derived
from them, and writes a PNG chart. Uses the node tests' harness (tests/node): containerd 2.x,
gVisor's runsc and shim and crictl from tools/build-test-tools.sh, Debian's runc.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

from benchmarks.sandbox.report import (
    chart,
    derive_overhead,
    memory_table,
    start_table,
    work_table,
)
from benchmarks.sandbox.run import Counts, Results, run
from benchmarks.sandbox.setup import bench_nodes, variants
from benchmarks.stats import load_average, machine, median

DEFAULT_CHART = Path("benchmarks/out/sandbox_overhead.png")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sandbox_overhead",
                                     description=__doc__.split("\n\n")[0])
    for f in fields(Counts):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                            default=f.default, help=f"default {f.default}")
    parser.add_argument("--kvm", action="store_true",
                        help="also measure platform kvm (needs a working /dev/kvm)")
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART,
                        help=f"PNG to write (default {DEFAULT_CHART})")
    return parser.parse_args(argv)


def report(res: Results, kvm: bool) -> str:
    overhead = derive_overhead(res)
    client = median(res.client) * 1e3
    lines = [
        "## Pod start (RunPodSandbox -> container running -> exited) and removal",
        f"(each CRI call includes one crictl start: {client:.0f} ms median here)",
        start_table(res), "",
        "## Memory and CPU of idle pods (the shim and every process under it)",
        memory_table(res), "",
        "## Workloads inside a running pod (timed by the probe inside the container)",
        work_table(res), "",
        "## Derived RuntimeClass gvisor overhead.podFixed",
        f"memory: {overhead.memory_mib}Mi  <- {overhead.memory_basis}",
        f"cpu:    {overhead.cpu_millicores}m  <- {overhead.cpu_basis}",
        "",
        "processes counted per pod: " + "; ".join(
            f"{name}: {', '.join(procs)}" for name, procs in res.processes.items()),
    ]
    if not kvm:
        lines.append("platform kvm not measured (--kvm where /dev/kvm works)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        print("needs root: it starts containerd and runs pods", file=sys.stderr)
        return 2
    counts = Counts(**{f.name: getattr(args, f.name) for f in fields(Counts)})
    chosen = variants(args.kvm)
    start = time.monotonic()
    print(f"machine: {machine()}")
    print(f"load average (1 min) at start: {load_average():.2f}", flush=True)

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="sandbox-overhead-") as tmp, \
            bench_nodes(Path(tmp), chosen) as bench:
        log(f"{len(bench.nodes)} containerd nodes up")
        res = run(bench, chosen, counts, Path(tmp), log)
    print(report(res, args.kvm))
    print(f"load average (1 min) at each phase: {', '.join(f'{x:.2f}' for x in res.load)}")
    print(f"total: {time.monotonic() - start:.0f} s")
    chart(res, args.chart)
    print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
