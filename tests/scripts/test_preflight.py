"""preflight.sh (also run by tools/check-node) on a fake host: /sys and /proc roots written by
the test, so every requirement can be met or not regardless of the machine running it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import run_script

CHECK_NODE = Path(__file__).resolve().parents[2] / "tools" / "check-node"
# What tools/check-node and preflight.sh call; containerd is left out on purpose.
NODE_CHECK_COMMANDS = ("bash", "dirname", "cat", "uname", "tail", "df", "awk", "grep", "sed",
                       "head")


def fake_host(root: Path, *, cgroup2: bool = True, modules: tuple[str, ...] = ("overlay",
              "br_netfilter"), forward: str = "1", bridge: str | None = "1", swap: bool = False
              ) -> dict[str, str]:
    """A host's /sys and /proc as preflight reads them. `bridge`: the value of
    net.bridge.bridge-nf-call-iptables, None when the kernel has no br_netfilter at all (its
    sysctls exist only then); `modules`: those with a /sys/module entry."""
    sys_root, proc_root = root / "sys", root / "proc"
    (sys_root / "fs/cgroup").mkdir(parents=True)
    if cgroup2:
        (sys_root / "fs/cgroup/cgroup.controllers").write_text("cpu memory\n")
    for module in modules:
        (sys_root / "module" / module).mkdir(parents=True)
    (proc_root / "sys/net/ipv4").mkdir(parents=True)
    (proc_root / "sys/net/ipv4/ip_forward").write_text(forward + "\n")
    if bridge is not None:
        (proc_root / "sys/net/bridge").mkdir(parents=True)
        (proc_root / "sys/net/bridge/bridge-nf-call-iptables").write_text(bridge + "\n")
    swaps = "Filename Type Size Used Priority\n"
    if swap:
        swaps += "/swapfile file 1024 0 -2\n"
    (proc_root / "swaps").write_text(swaps)
    return {"SYS_ROOT": str(sys_root), "PROC_ROOT": str(proc_root), "MIN_FREE_GIB": "0"}


def test_preflight_passes_on_a_ready_host(tmp_path: Path) -> None:
    result = run_script("preflight.sh", fake_host(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "all requirements met" in result.stderr


def test_preflight_names_every_unmet_requirement(tmp_path: Path) -> None:
    env = fake_host(tmp_path, cgroup2=False, modules=("overlay",), bridge=None, forward="0",
                    swap=True)
    env.update({"REQUIRE_KVM": "1", "MIN_FREE_GIB": "1000000",
                "KVM_DEVICE": str(tmp_path / "no-kvm")})
    result = run_script("preflight.sh", env)
    assert result.returncode != 0
    for fragment in ("cgroup v2", "br_netfilter", "net.ipv4.ip_forward is 0", "swap is on",
                     "GiB free", "no-kvm is missing"):
        assert fragment in result.stderr, fragment
    assert "6 preflight requirement(s) unmet" in result.stderr


def test_preflight_accepts_modules_built_into_the_kernel(tmp_path: Path) -> None:
    # Built in, br_netfilter has no /sys/module entry (it takes no parameters) but its
    # sysctls exist; overlay shows in /proc/filesystems.
    env = fake_host(tmp_path, modules=())
    (tmp_path / "proc/filesystems").write_text("nodev\tsysfs\nnodev\toverlay\n\text4\n")
    result = run_script("preflight.sh", env)
    assert result.returncode == 0, result.stderr
    assert "not loaded" not in result.stderr


def test_preflight_checks_the_sysctl_of_a_built_in_br_netfilter(tmp_path: Path) -> None:
    result = run_script("preflight.sh", fake_host(tmp_path, modules=("overlay",), bridge="0"))
    assert result.returncode != 0
    assert "sysctl net.bridge.bridge-nf-call-iptables is 0, must be 1" in result.stderr
    assert "br_netfilter is not loaded" not in result.stderr
    assert "1 preflight requirement(s) unmet" in result.stderr


def test_preflight_names_a_missing_br_netfilter_once_with_its_fix(tmp_path: Path) -> None:
    result = run_script("preflight.sh", fake_host(tmp_path, modules=("overlay",), bridge=None))
    assert "kernel module br_netfilter is not loaded (modprobe br_netfilter;" in result.stderr
    assert "bridge-nf-call-iptables" not in result.stderr
    assert "1 preflight requirement(s) unmet" in result.stderr


def test_preflight_accepts_a_kvm_device_when_required(tmp_path: Path) -> None:
    # /dev/null stands in for /dev/kvm: the check is "a character device exists".
    env = {**fake_host(tmp_path), "REQUIRE_KVM": "1", "KVM_DEVICE": "/dev/null"}
    result = run_script("preflight.sh", env)
    assert result.returncode == 0, result.stderr


# --- tools/check-node ------------------------------------------------------------------------

def check_node(env: dict[str, str], bin_dir: Path, *args: str
               ) -> subprocess.CompletedProcess[str]:
    """tools/check-node on the fake host, with only NODE_CHECK_COMMANDS on PATH (so no
    containerd: the handler checks are skipped, as on a host that is not a node yet)."""
    bin_dir.mkdir(exist_ok=True)
    for name in NODE_CHECK_COMMANDS:
        found = shutil.which(name)
        assert found, name
        (bin_dir / name).symlink_to(found)
    return subprocess.run(["bash", str(CHECK_NODE), *args], capture_output=True, text=True,
                          env={**env, "PATH": str(bin_dir)}, timeout=60, check=False)


def test_check_node_passes_with_br_netfilter_built_into_the_kernel(tmp_path: Path) -> None:
    # A kernel with br_netfilter built in: no /sys/module/br_netfilter, the sysctl is 1.
    done = check_node(fake_host(tmp_path, modules=("overlay",)), tmp_path / "bin")
    assert done.returncode == 0, done.stderr
    assert "br_netfilter" not in done.stderr
    assert "containerd is not installed (yet)" in done.stderr
    assert "node check passed for handlers: runc" in done.stderr


def test_check_node_names_what_is_missing_with_its_fix(tmp_path: Path) -> None:
    env = fake_host(tmp_path, modules=("overlay",), bridge=None, forward="0")
    done = check_node(env, tmp_path / "bin")
    assert done.returncode == 1
    assert "kernel module br_netfilter is not loaded (modprobe br_netfilter;" in done.stderr
    assert ("sysctl net.ipv4.ip_forward is 0, must be 1 (sysctl -w net.ipv4.ip_forward=1;"
            in done.stderr)
    assert "node check failed" in done.stderr
