"""benchmarks/sandbox_overhead.py: its arithmetic on made-up results (quick), and one run on
real containerd with tiny counts (slow), so the benchmark keeps working."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import sandbox_overhead
from benchmarks.sandbox.measure import PodStart
from benchmarks.sandbox.procs import Usage
from benchmarks.sandbox.report import derive_overhead, work_table
from benchmarks.sandbox.run import Counts, Results, rotated
from benchmarks.sandbox.setup import RUNC, RUNSC, variants
from benchmarks.stats import median, p90, table


def _start(exited: float, cpu: float) -> PodStart:
    return PodStart(sandbox=exited / 2, running=exited * 0.8, exited=exited, removal=0.1,
                    cpu_seconds=cpu)


def _results() -> Results:
    mib = 1024
    res = Results((RUNC, RUNSC), Counts(idle_pods=10, syscalls=1000, files=10, requests=10))
    res.starts = {RUNC.name: [_start(0.3, 0.08)] * 3, RUNSC.name: [_start(0.6, 0.2)] * 3}
    res.idle_one = {RUNC.name: Usage(pss_kib=12 * mib), RUNSC.name: Usage(pss_kib=40 * mib)}
    res.idle_many = {RUNC.name: Usage(pss_kib=90 * mib), RUNSC.name: Usage(pss_kib=300 * mib)}
    res.after_work = {RUNC.name: Usage(pss_kib=13 * mib), RUNSC.name: Usage(pss_kib=38 * mib)}
    res.idle_cpu_millicores = {RUNC.name: 0.0, RUNSC.name: 2.0}
    res.work = {v: {w: [0.01, 0.02, 0.03] for w in ("syscalls", "files in root",
                                                      "files in bind mount", "loopback HTTP")}
                for v in (RUNC.name, RUNSC.name)}
    return res


def test_overhead_is_the_largest_measured_difference_with_the_margin() -> None:
    overhead = derive_overhead(_results())
    # Memory: 1 pod 28 MiB, 10 pods 21 MiB/pod, after work 25 MiB -> 28 x 1.5 = 42 -> 48Mi.
    assert overhead.memory_mib == 48
    assert "1 idle pod" in overhead.memory_basis
    # CPU: start (0.2 - 0.08) CPU-s over 0.6 s = 200m > idle 2m; x 1.5 = 300m.
    assert overhead.cpu_millicores == 300
    assert "start" in overhead.cpu_basis


def test_statistics_and_tables() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 2, 3]) == 2.5
    assert p90(list(range(1, 11))) == 9
    assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert table(["a", "b"], [["x", 1.0]]).splitlines() == ["| a | b |", "|---|--:|",
                                                            "| x | 1 |"]
    assert "| syscalls " in work_table(_results())


def test_kvm_is_measured_only_when_asked() -> None:
    assert all("kvm" not in v.name for v in variants(False))
    assert any("kvm" in v.name for v in variants(True))


@pytest.mark.slow
def test_one_tiny_run_on_real_containerd(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    if os.geteuid() != 0:
        pytest.skip("the sandbox benchmark starts containerd and needs root")
    chart = tmp_path / "chart.png"
    code = sandbox_overhead.main([
        "--starts", "1", "--rounds", "1", "--idle-pods", "2", "--idle-seconds", "1",
        "--syscalls", "100", "--files", "3", "--requests", "3", "--chart", str(chart)])
    out = capsys.readouterr().out
    assert code == 0
    for v in variants(False):
        # A row in the start and memory tables, and one per workload.
        assert out.count(f"| {v.name} ") == 2 + 4, v.name
    # Every gVisor variant really ran in gVisor: its pod had a sandbox and a gofer.
    counted = out.split("processes counted per pod: ", 1)[1].splitlines()[0]
    for part in counted.split("; "):
        name, procs = part.split(": ", 1)
        assert ("runsc boot" in procs) == name.startswith("runsc"), part
    assert "load average (1 min) at start" in out
    assert "memory: " in out and "cpu: " in out
    assert chart.read_bytes().startswith(b"\x89PNG")
