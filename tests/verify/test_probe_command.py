"""The network probe's command, run by a real busybox against addresses it cannot reach, ends
in an outcome verify reads as "blocked" (never a crash it would report as unclear)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from verify.checks import NET_METADATA, probe_row, wget
from verify.report import Status

BUSYBOX = "/bin/busybox"

pytestmark = pytest.mark.skipif(
    not os.path.exists(BUSYBOX) or shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs busybox-static and root (a private network namespace)")


@pytest.mark.parametrize("script", [
    "exec {probe}",  # no route at all
    "ip link set lo up && exec {probe}",  # refused on loopback
])
def test_an_unreachable_target_reads_as_blocked(script: str) -> None:
    url = "http://169.254.169.254:80/" if "lo up" not in script else "http://127.0.0.1:9/"
    probe = " ".join(f"{BUSYBOX} {word}" if word in ("timeout", "wget") else word
                     for word in wget(url))
    done = subprocess.run(["unshare", "-n", "sh", "-c", script.format(probe=probe)],
                          capture_output=True, text=True, timeout=60)
    row = probe_row(NET_METADATA, url, (done.returncode, done.stdout, done.stderr))
    assert row.status is Status.PASS, (done.returncode, done.stderr, row)
