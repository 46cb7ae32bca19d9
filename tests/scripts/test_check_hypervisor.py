"""tools/check-hypervisor on a fake host: /sys, qemu.conf and the AppArmor directory written by
the test, libvirt answered by a fake virsh, and only the commands the tool needs on PATH. Each
problem fails naming its fix; a host without any passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "check-hypervisor"
COMMANDS = ("bash", "dirname", "sed", "tr", "tail", "head", "cat", "stat", "find", "grep")


@dataclass
class FakeHost:
    root: Path
    pools: dict[str, tuple[str, Path | None]] = field(default_factory=dict)  # state, dir
    reachable: bool = True
    commands: dict[str, str] = field(default_factory=lambda: {"mkisofs": "#!/bin/sh\n"})
    env: dict[str, str] = field(default_factory=dict)

    def virsh(self) -> str:
        """A virsh answering `-c URI uri|pool-list|pool-info|pool-dumpxml` from `pools`;
        every URI it is asked for is appended to virsh.log."""
        info = "".join(f"  {name}) printf 'Name: {name}\\nState:          {state}\\n' ;;\n"
                       for name, (state, _) in self.pools.items())
        xml = "".join(
            f"  {name}) printf '<pool type=\"dir\">\\n  <target>\\n    <path>{path}</path>\\n"
            f"  </target>\\n</pool>\\n' ;;\n" if path else
            f"  {name}) printf '<pool type=\"rbd\">\\n  <source/>\\n</pool>\\n' ;;\n"
            for name, (_, path) in self.pools.items())
        names = "".join(f"{name:<20}\\n" for name in self.pools)  # padded, as virsh does
        return f"""#!/bin/sh
echo "$2" >> {self.root}/virsh.log
{"" if self.reachable else
 'echo "error: failed to connect to the hypervisor" >&2; echo "error: no socket" >&2; exit 1'}
cmd=$3 name=$4
case $cmd in
uri) echo "$2" ;;
pool-list) printf '{names}\\n' ;;
pool-info) case $name in
{info}  *) echo "error: Storage pool not found" >&2; exit 1 ;;
esac ;;
pool-dumpxml) case $name in
{xml}  *) exit 1 ;;
esac ;;
esac
"""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        bin_dir = self.root / "bin"
        shutil.rmtree(bin_dir, ignore_errors=True)
        bin_dir.mkdir()
        for name in COMMANDS:
            found = shutil.which(name)
            assert found, name
            (bin_dir / name).symlink_to(found)
        for name, text in {"virsh": self.virsh(), **self.commands}.items():
            (bin_dir / name).unlink(missing_ok=True)  # never write through a symlink to /usr/bin
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        env = {"PATH": str(bin_dir), "SYS_ROOT": str(self.root / "sys"),
               "KVM_DEVICE": "/dev/null", "QEMU_CONF": str(self.root / "qemu.conf"),
               "APPARMOR_DIR": str(self.root / "apparmor.d"), "PYTHON": sys.executable,
               **self.env}
        return subprocess.run(["bash", str(TOOL), *args], capture_output=True, text=True,
                              env=env, timeout=120, check=False)

    def sys_file(self, path: str, content: str) -> None:
        file = self.root / "sys" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(content)


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    directory = tmp_path / "images"
    directory.mkdir()
    for name in ("dev-master-root.qcow2", "dev-master-cloudinit.iso"):
        (directory / name).write_text("disk")
        (directory / name).chmod(0o600)
    directory.chmod(0o711)
    return directory


@pytest.fixture
def host(tmp_path: Path, pool: Path) -> FakeHost:
    (tmp_path / "sys").mkdir()
    (tmp_path / "qemu.conf").write_text("# libvirt's defaults\n#security_driver = \"selinux\"\n")
    return FakeHost(tmp_path, {"default": ("running", pool)})


def unmet_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if "unmet:" in line]


def test_a_ready_host_passes(host: FakeHost, pool: Path) -> None:
    done = host.run()
    assert done.returncode == 0, done.stderr
    assert f"hypervisor check passed: qemu:///system * kvm -; pool directories: {pool}" \
        in done.stderr


def test_a_listable_pool_directory_fails_with_its_fix(host: FakeHost, pool: Path) -> None:
    pool.chmod(0o755)
    done = host.run("--pool", "default")
    assert done.returncode == 1
    assert f"pool directory {pool} (mode 755) can be listed" in done.stderr
    assert f"chmod o-r '{pool}'" in done.stderr
    assert "hypervisor check failed" in done.stderr


def test_a_pool_directory_qemu_cannot_enter_fails(host: FakeHost, pool: Path) -> None:
    pool.chmod(0o700)
    done = host.run()
    assert done.returncode == 1
    assert f"pool directory {pool} (mode 700) cannot be entered by qemu" in done.stderr
    assert f"chmod 0711 '{pool}'" in done.stderr
    (host.root / "qemu.conf").write_text('user = "+0"\n')  # qemu runs as root
    assert host.run().returncode == 0


def test_a_readable_volume_fails_with_its_fix(host: FakeHost, pool: Path) -> None:
    iso = pool / "dev-master-cloudinit.iso"
    iso.chmod(0o644)
    done = host.run()
    assert done.returncode == 1
    assert f"volume {iso} (mode 644) can be read by every user" in done.stderr
    assert f"chmod 0600 '{iso}'" in done.stderr
    assert "dev-master-root.qcow2" not in done.stderr  # 0600: fine


def test_pools_are_read_from_libvirt(host: FakeHost, pool: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir(mode=0o755)
    host.pools.update({"other": ("running", other), "ceph": ("running", None)})
    done = host.run()
    assert done.returncode == 1
    assert f"pool directory {other} (mode 755)" in done.stderr
    assert "cannot read the directory of pool ceph at qemu:///system" in done.stderr
    assert str(pool) not in "".join(unmet_lines(done))


def test_a_missing_or_stopped_pool_fails_with_its_fix(host: FakeHost) -> None:
    done = host.run("--pool", "vms")
    assert done.returncode == 1
    assert ("storage pool vms does not exist at qemu:///system (the program creates every "
            "volume in it but not the pool); fix: virsh -c qemu:///system pool-define-as vms "
            "dir --target /var/lib/libvirt/images") in done.stderr
    host.pools["default"] = ("inactive", host.pools["default"][1])
    done = host.run("--pool", "default")
    assert "storage pool default at qemu:///system is inactive; fix: virsh -c " \
        "qemu:///system pool-start default" in done.stderr


def test_unreachable_libvirt_fails_with_its_error_and_fix(host: FakeHost) -> None:
    host.reachable = False
    done = host.run("--connect", "qemu:///system")
    assert done.returncode == 1
    [line] = unmet_lines(done)
    assert ("libvirt is not reachable at qemu:///system (error: failed to connect to the "
            "hypervisor error: no socket); fix: start it (systemctl enable --now libvirtd)"
            in line)
    assert "usermod -aG libvirt" in line


def test_mkisofs_is_required_on_the_machine_that_runs_pulumi(host: FakeHost) -> None:
    host.commands = {}
    done = host.run()
    assert done.returncode == 1
    [line] = unmet_lines(done)
    assert "neither mkisofs nor genisoimage is on PATH" in line
    assert "fix: apt install genisoimage" in line
    assert host.run("--host-only").returncode == 0
    host.commands = {"genisoimage": "#!/bin/sh\n"}  # the seed builder runs either
    assert host.run().returncode == 0


def test_domain_type_kvm_needs_a_kvm_device(host: FakeHost) -> None:
    host.env["KVM_DEVICE"] = str(host.root / "no-kvm")
    done = host.run()
    assert done.returncode == 1
    assert "no-kvm is missing, and pools at qemu:///system use domain type kvm; fix:" \
        in done.stderr
    assert "libvirt.domainType: qemu" in done.stderr
    assert host.run("--domain-type", "qemu").returncode == 0


def test_nested_virtualisation_is_checked_when_asked_for(host: FakeHost) -> None:
    done = host.run("--nested")
    assert done.returncode == 1
    assert "neither kvm_intel nor kvm_amd is loaded" in done.stderr
    host.sys_file("module/kvm_intel/parameters/nested", "N\n")
    done = host.run("--nested")
    assert done.returncode == 1
    assert ("nested virtualisation is off (kvm_intel nested=N), and a pool at qemu:///system "
            "runs Kata or runsc's kvm platform; fix: echo 'options kvm_intel nested=1' > "
            "/etc/modprobe.d/kvm-nested.conf") in done.stderr
    assert host.run().returncode == 0  # no pool needs it
    host.sys_file("module/kvm_intel/parameters/nested", "Y\n")
    assert host.run("--nested").returncode == 0


def test_apparmor_without_the_pool_allowed_fails_with_its_fix(host: FakeHost,
                                                               pool: Path) -> None:
    host.sys_file("module/apparmor/parameters/enabled", "Y\n")
    done = host.run()
    assert done.returncode == 1
    rules = host.root / "apparmor.d/local/abstractions/libvirt-qemu"
    [line] = unmet_lines(done)
    assert f"AppArmor confines qemu (libvirt's security driver apparmor), and {pool} is not " \
        f"allowed in {rules}" in line
    assert f"fix: printf '  \"%s/\" r,\\n  \"%s/**\" rwk,\\n' '{pool}' '{pool}' >> {rules}" \
        in line
    # The fix, as printed, passes.
    fix = line.split("fix: ", 1)[1].split(" (VMs started", 1)[0]
    rules.parent.mkdir(parents=True)
    subprocess.run(["bash", "-c", fix], check=True)
    assert rules.read_text() == f'  "{pool}/" r,\n  "{pool}/**" rwk,\n'
    assert host.run().returncode == 0


def test_apparmor_is_not_in_the_way_with_another_security_driver(host: FakeHost) -> None:
    host.sys_file("module/apparmor/parameters/enabled", "Y\n")
    (host.root / "qemu.conf").write_text('security_driver = "none"\n')
    assert host.run().returncode == 0


def test_selinux_enforcing_needs_the_virt_image_label(host: FakeHost, pool: Path) -> None:
    host.sys_file("fs/selinux/enforce", "1\n")
    real_stat = shutil.which("stat")
    host.commands["stat"] = f"""#!/bin/sh
if [ "$1" = -c ] && [ "$2" = %C ]; then echo "$CONTEXT"; else exec {real_stat} "$@"; fi
"""
    host.env["CONTEXT"] = "unconfined_u:object_r:default_t:s0"
    done = host.run()
    assert done.returncode == 1
    [line] = unmet_lines(done)
    assert f"SELinux enforces, and pool directory {pool} is labelled " \
        "unconfined_u:object_r:default_t:s0, not virt_image_t" in line
    assert f"fix: semanage fcontext -a -t virt_image_t '{pool}(/.*)?' && restorecon -Rv " \
        f"'{pool}'" in line
    host.env["CONTEXT"] = "system_u:object_r:virt_image_t:s0"
    assert host.run().returncode == 0
    host.env["CONTEXT"] = "unconfined_u:object_r:default_t:s0"
    host.sys_file("fs/selinux/enforce", "0\n")  # permissive
    assert host.run().returncode == 0


def test_a_remote_uri_is_checked_through_libvirt_only(host: FakeHost) -> None:
    host.env["KVM_DEVICE"] = str(host.root / "no-kvm")  # this machine's: not the hypervisor's
    done = host.run("--connect", "qemu+ssh://hv1/system", "--pool", "default", "--nested")
    assert done.returncode == 0, done.stderr
    assert ("qemu+ssh://hv1/system is another host: run tools/check-hypervisor --host-only "
            "--domain-type kvm --nested --pool default there") in done.stderr
    assert "pool directories: none" in done.stderr


def test_the_stack_says_what_to_check(host: FakeHost) -> None:
    host.sys_file("module/kvm_intel/parameters/nested", "0\n")
    done = host.run("--stack", "dev")  # no pool runs Kata
    assert done.returncode == 0, done.stderr
    assert "hypervisor check passed: qemu:///system default kvm -" in done.stderr
    done = host.run("--stack", str(REPO / "stacks" / "Pulumi.ha.yaml"))  # a Kata pool
    assert done.returncode == 1
    [line] = unmet_lines(done)
    assert "nested virtualisation is off (kvm_intel nested=0)" in line
    assert set((host.root / "virsh.log").read_text().split()) == {"qemu:///system"}


def test_an_invalid_stack_or_argument_is_a_usage_error(host: FakeHost, tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  sandboxed-k8s:libvirt:\n    storagePol: x\n")
    done = host.run("--stack", str(bad))
    assert done.returncode == 2
    assert "libvirt.storagePol" in done.stderr
    assert host.run("--frobnicate").returncode == 2
    assert host.run("--domain-type", "xen").returncode == 2
