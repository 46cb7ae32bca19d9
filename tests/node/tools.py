"""Where the node-test binaries come from: Debian packages and tools/build-test-tools.sh.

Nothing here skips when a tool is missing: Debian packages are installed with apt-get and the
Go-built tools are built by running the build script (idempotent, cached outside the repo).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests import build_tools
from tests.build_tools import ToolError

# Debian 12 packages the node tests need: containerd 1.6 + runc, and busybox for the image.
DEBIAN_PACKAGES = {
    "containerd": Path("/usr/bin/containerd"),
    "runc": Path("/usr/sbin/runc"),
    "busybox-static": Path("/bin/busybox"),
}
DEBIAN_CONTAINERD = Path("/usr/bin/containerd")
DEBIAN_CTR = Path("/usr/bin/ctr")
SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]

CAP_SYS_RESOURCE = 24


@dataclass(frozen=True)
class ContainerdFlavor:
    """One containerd installation: its daemon, its ctr, and the PATH its shims come from."""

    name: str
    containerd: Path
    ctr: Path
    path_dirs: tuple[Path, ...]
    version: str = ""

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([*(str(d) for d in self.path_dirs), *SYSTEM_PATH])
        return env


@dataclass(frozen=True)
class NodeTools:
    bins: dict[str, Path]
    build_seconds: float
    shim_testpatch_used: bool
    flavors: dict[str, ContainerdFlavor] = field(default_factory=dict)

    @property
    def crictl(self) -> Path:
        return self.bins["crictl"]


def has_capability(cap: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def ensure_debian_packages() -> list[str]:
    """Install the Debian packages that are missing; returns the names installed."""
    missing = [pkg for pkg, path in DEBIAN_PACKAGES.items() if not path.exists()]
    if not missing:
        return []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(cmd, env=env, capture_output=True, text=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolError(f"apt-get install {' '.join(missing)} failed:\n{proc.stderr}")
    still = [pkg for pkg in missing if not DEBIAN_PACKAGES[pkg].exists()]
    if still:
        raise ToolError(f"installed {still} but their binaries are still missing")
    return missing


NODE_BINARIES = (
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runsc",
    "containerd-shim-runsc-v1",
    "crictl",
    "containerd-shim-runsc-v1-testpatch",
)


def run_build_script() -> tuple[dict[str, Path], float]:
    """Build the node group of tools/build-test-tools.sh (if needed) and parse its paths."""
    return build_tools.run_build_script("node", NODE_BINARIES)


def containerd_version(binary: Path) -> str:
    """`containerd --version` -> "1.6.20" / "2.2.9" (no leading v, no Debian suffix)."""
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()
    # "containerd github.com/containerd/containerd 1.6.20~ds1" / "... v2.2.9 goproxy"
    version = out[2].lstrip("v")
    for sep in ("~", "+", "-"):
        version = version.split(sep, 1)[0]
    return version


def discover() -> NodeTools:
    ensure_debian_packages()
    bins, seconds = run_build_script()
    # gVisor's shim insists on oom_score_adj -999, which needs CAP_SYS_RESOURCE; hosts
    # without it get the test build that tolerates only that refusal (see the build script).
    use_testpatch = not has_capability(CAP_SYS_RESOURCE)
    shim_dirs: list[Path] = []
    if use_testpatch:
        shim_dirs.append(bins["containerd-shim-runsc-v1-testpatch"].parent)
    shim_dirs.append(bins["runsc"].parent)
    for tool in ("runc",):
        if shutil.which(tool, path=os.pathsep.join(SYSTEM_PATH)) is None:
            raise ToolError(f"{tool} not found on {SYSTEM_PATH}")
    flavors = {
        # Debian's containerd 1.6 with Debian's runc shim (/usr/bin) and runc (/usr/sbin).
        "1.6": ContainerdFlavor(
            name="1.6",
            containerd=DEBIAN_CONTAINERD,
            ctr=DEBIAN_CTR,
            path_dirs=tuple(shim_dirs),
            version=containerd_version(DEBIAN_CONTAINERD),
        ),
        # Go-built containerd 2.x with its own runc shim first on PATH (runc is Debian's).
        "2.x": ContainerdFlavor(
            name="2.x",
            containerd=bins["containerd"],
            ctr=bins["ctr"],
            path_dirs=(*shim_dirs, bins["containerd"].parent),
            version=containerd_version(bins["containerd"]),
        ),
    }
    return NodeTools(
        bins=bins, build_seconds=seconds, shim_testpatch_used=use_testpatch, flavors=flavors
    )
