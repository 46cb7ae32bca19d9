"""install-gvisor.sh against a local release laid out like upstream's, built from the real
runsc and containerd-shim-runsc-v1 this suite builds: installs and verifies; a corrupted
release is refused and the earlier install stays in place."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_script

from .tools import NodeTools

pytestmark = pytest.mark.slow

BINARIES = ("runsc", "containerd-shim-runsc-v1")


def publish_release(www: Path, release: str, tools: NodeTools, *, corrupt: bool = False) -> None:
    """<release>/x86_64/gvisor.tar.bz2 and its .sha512, as gVisor's bucket serves them."""
    folder = www / release / "x86_64"
    folder.mkdir(parents=True)
    archive = folder / "gvisor.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        for name in BINARIES:
            tar.add(tools.bins[name], arcname=name)
    digest = hashlib.sha512(archive.read_bytes()).hexdigest()
    (folder / "gvisor.tar.bz2.sha512").write_text(f"{digest}  gvisor.tar.bz2\n")
    if corrupt:  # bytes flipped in transit or on the mirror; the published digest is intact
        data = bytearray(archive.read_bytes())
        data[len(data) // 2] ^= 0xFF
        archive.write_bytes(bytes(data))


def install(url: str, release: str, prefix: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return run_script("install-gvisor.sh", {
        "GVISOR_RELEASE": release, "GVISOR_BASE_URL": url, "GVISOR_LAYOUT": "archive",
        "PREFIX": str(prefix), "STATE_DIR": str(state)})


def test_real_release_installs_and_a_corrupted_one_is_refused(
        node_tools: NodeTools, release_server: tuple[str, Path], tmp_path: Path,
        state_dir: Path) -> None:
    url, www = release_server
    prefix = tmp_path / "prefix"
    publish_release(www, "20251118.0", node_tools)
    first = install(url, "20251118.0", prefix, state_dir)
    assert first.returncode == 0, first.stderr
    for name in BINARIES:
        assert (prefix / "bin" / name).read_bytes() == node_tools.bins[name].read_bytes()
    version = subprocess.run([str(prefix / "bin/runsc"), "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert "runsc version" in version

    installed = {n: (prefix / "bin" / n).read_bytes() for n in BINARIES}
    publish_release(www, "20260101.0", node_tools, corrupt=True)
    refused = install(url, "20260101.0", prefix, state_dir)
    assert refused.returncode != 0
    assert "checksum mismatch for gvisor.tar.bz2" in refused.stderr
    for name in BINARIES:
        assert (prefix / "bin" / name).read_bytes() == installed[name], name
    # The earlier release is still what the node reports as installed.
    again = install(url, "20251118.0", prefix, state_dir)
    assert again.returncode == 0 and "already installed" in again.stderr
