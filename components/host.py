"""What the machine running `pulumi preview`/`up` needs besides Python and the Pulumi engine.

Checked before any resource is registered, so a missing tool is named up front instead of
failing half-way through a deployment.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping

# Executable -> why it is needed and where it comes from.
REQUIRED_TOOLS: Mapping[str, str] = {
    "mkisofs": "the program builds each node's cloud-init seed (an ISO image) with it "
               "on this machine; Debian/Ubuntu: apt install genisoimage; Fedora/RHEL: "
               "dnf install genisoimage (or xorriso's mkisofs)",
}


class HostError(RuntimeError):
    """Every tool this machine lacks, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("this machine cannot run the program:\n"
                         + "\n".join(f"  - {p}" for p in problems))


def missing_tools(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """One line per required executable that is not on PATH."""
    return [f"{tool} not found on PATH: {why}" for tool, why in REQUIRED_TOOLS.items()
            if which(tool) is None]


def check_host(which: Callable[[str], str | None] = shutil.which) -> None:
    problems = missing_tools(which)
    if problems:
        raise HostError(problems)
