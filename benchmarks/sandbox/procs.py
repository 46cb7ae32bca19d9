"""A pod's host processes and what they use: memory from smaps_rollup, CPU from /proc stat.

A pod's processes are its containerd shim (`-id <pod id>`) and everything below it: for runc
the pause and container processes; for runsc the sandbox (the Sentry and, with systrap, its
stub processes) and the gofer, which the shim adopts as their subreaper. `runc`/`runsc`
invocations that already exited are in the shim's cutime/cstime.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    rss_kib: int = 0
    pss_kib: int = 0
    cpu_seconds: float = 0.0  # own and reaped children's user + system time
    processes: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.rss_kib + other.rss_kib, self.pss_kib + other.pss_kib,
                     self.cpu_seconds + other.cpu_seconds, self.processes + other.processes)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:  # the process ended meanwhile
        return ""


def _cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str]:
    stat = _read(PROC / str(pid) / "stat")
    # The command name may hold spaces and parentheses: split after its closing one.
    return stat[stat.rfind(")") + 2:].split() if stat else []


def children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def shim_pid(pod_id: str, socket: Path) -> int:
    """The pid of the shim that serves `pod_id` for the containerd listening on `socket`."""
    wanted = f"-id {pod_id} "
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            cmd = _cmdline(int(entry.name)) + " "
            if "containerd-shim" in cmd and wanted in cmd and str(socket) in cmd:
                return int(entry.name)
    raise LookupError(f"no shim for pod {pod_id} of {socket}")


def tree(root: int, children: dict[int, list[int]]) -> list[int]:
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children.get(pid, [])
    return found


def usage(pids: Iterable[int]) -> Usage:
    total = Usage()
    for pid in pids:
        rollup = _read(PROC / str(pid) / "smaps_rollup")
        fields = _stat_fields(pid)
        if not rollup or not fields:
            continue
        mem = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:]
               if line.endswith("kB")}
        # utime stime cutime cstime: fields 14-17 of stat, 12-15 after the command name.
        cpu = sum(int(v) for v in fields[11:15]) / TICKS
        total += Usage(mem.get("Rss", 0), mem.get("Pss", 0), cpu, 1)
    return total


def pod_usage(pod_id: str, socket: Path, children: dict[int, list[int]] | None = None) -> Usage:
    return usage(tree(shim_pid(pod_id, socket), children or children_map()))


def _role(pid: int) -> str:
    """runsc re-executes itself (comm "exe"): name its processes by their subcommand."""
    comm = _read(PROC / str(pid) / "comm").strip()
    if comm != "exe":
        return comm
    words = _cmdline(pid).split()
    for sub in ("boot", "gofer", "wait", "start", "create"):
        if sub in words:
            return f"runsc {sub}"
    return "runsc (stub)"


def process_names(pod_id: str, socket: Path) -> list[str]:
    """What was counted for a pod: "<name> x<count>" per kind of process in its tree."""
    roles: dict[str, int] = {}
    for pid in tree(shim_pid(pod_id, socket), children_map()):
        role = _role(pid)
        if role:
            roles[role] = roles.get(role, 0) + 1
    return [f"{role} x{n}" if n > 1 else role for role, n in sorted(roles.items())]
