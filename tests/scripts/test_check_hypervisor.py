"""tools/check-hypervisor against real directories: a pool others can list, or a volume they
can read, fails naming the path and the fix; a private pool passes; pools come from libvirt."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "check-hypervisor"


def check(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = None if path is None else {"PATH": path}
    return subprocess.run(["bash", str(TOOL), *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    directory = tmp_path / "images"
    directory.mkdir()
    for name in ("dev-master-root.qcow2", "dev-master-cloudinit.iso"):
        (directory / name).write_text("disk")
        (directory / name).chmod(0o600)
    directory.chmod(0o711)
    return directory


def test_a_private_pool_passes(pool: Path) -> None:
    done = check("--dir", str(pool))
    assert done.returncode == 0, done.stderr
    assert "storage pools private" in done.stderr


def test_a_listable_pool_directory_fails_with_its_fix(pool: Path) -> None:
    pool.chmod(0o755)
    done = check("--dir", str(pool))
    assert done.returncode == 1
    assert f"pool directory {pool} (mode 755) can be listed" in done.stderr
    assert f"chmod o-r '{pool}'" in done.stderr


def test_a_readable_volume_fails_with_its_fix(pool: Path) -> None:
    iso = pool / "dev-master-cloudinit.iso"
    iso.chmod(0o644)
    done = check("--dir", str(pool))
    assert done.returncode == 1
    assert f"volume {iso} (mode 644) can be read by every user" in done.stderr
    assert f"chmod 0600 '{iso}'" in done.stderr
    assert "dev-master-root.qcow2" not in done.stderr  # 0600: fine


def test_pools_are_read_from_libvirt(pool: Path, tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "virsh").write_text(f"""#!/bin/sh
case "$3" in
  pool-list) printf 'default\\nbroken\\n\\n' ;;
  pool-dumpxml) [ "$4" = default ] || exit 1
    printf '<pool type="dir">\\n  <name>default</name>\\n  <target>\\n    <path>{pool}</path>\\n'
    printf '  </target>\\n</pool>\\n' ;;
esac
""")
    (fake / "virsh").chmod(0o755)
    pool.chmod(0o755)
    done = check(path=f"{fake}:/usr/bin:/bin")
    assert done.returncode == 1
    assert f"pool directory {pool} (mode 755)" in done.stderr
    assert "cannot read the path of pool broken" in done.stderr
