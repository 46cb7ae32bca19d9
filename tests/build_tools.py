"""Runs tools/build-test-tools.sh for one group of Go-built test tools and parses its output.

Nothing here skips when a tool is missing: the script builds what is not cached (pinned,
idempotent, outside the repo) and fails loudly if it cannot.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "tools" / "build-test-tools.sh"


class ToolError(RuntimeError):
    pass


def run_build_script(group: str, expected: Iterable[str]) -> tuple[dict[str, Path], float]:
    """Build `group` if needed; returns {binary name: path} and the seconds it took."""
    start = time.monotonic()
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), group], capture_output=True, text=True,
                          timeout=3600)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise ToolError(f"{BUILD_SCRIPT} {group} failed ({proc.returncode}):\n"
                        f"{proc.stderr[-4000:]}")
    bins: dict[str, Path] = {}
    for line in proc.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "BIN":
            bins[parts[1]] = Path(parts[2])
    missing = sorted(name for name in expected if name not in bins or not bins[name].is_file())
    if missing:
        raise ToolError(f"{BUILD_SCRIPT} {group} did not produce {missing}; stdout:\n"
                        f"{proc.stdout}")
    return bins, seconds
