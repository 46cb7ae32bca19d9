"""Boot a Debian 12 VM with the node user-data and check what it must have done.

All tests share one boot (session fixture ``node_vm``); the whole module takes minutes under
TCG. Run with ``python -m pytest tests/vm -m vm``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from components.render.firewall import TABLE, UNIT

from .conftest import NODE_NETWORK, TIMINGS, NodeFixture
from .podnet import PodNetwork
from .ssh import HOST_KEY_ALIAS, HostKeyVerificationFailed, generate_ed25519_keypair
from .test_pod_firewall import assert_pods_are_fenced

pytestmark = [pytest.mark.slow, pytest.mark.vm]


def test_user_data_passes_cloud_init_schema(node_user_data: str, tmp_path: Path) -> None:
    if shutil.which("cloud-init") is None:
        pytest.skip("host has no cloud-init to validate the schema with")
    path = tmp_path / "user-data"
    path.write_text(node_user_data)
    proc = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cloud_init_finished_without_errors(node_vm: NodeFixture) -> None:
    status = node_vm.cloud_init
    assert status.ok, status.report()
    # The schema check inside the guest sees exactly what the datasource delivered.
    rc, out, err = node_vm.vm.run("sudo -n cloud-init schema --system", check=False)
    assert rc == 0, out + err


def test_cloud_init_log_has_no_warnings(node_vm: NodeFixture) -> None:
    # cloud-init 22.4 marks a failing module as a WARNING and may still report "done" for
    # some of them (e.g. a package install that was retried), so read the log too.
    problems = [line for line in node_vm.cloud_init.log_problems.splitlines() if line.strip()]
    assert not problems, "\n".join(problems)


def _keyscan(port: int, key_types: str) -> tuple[set[tuple[str, str]], str]:
    scan = subprocess.run(
        ["ssh-keyscan", "-T", "60", "-t", key_types, "-p", str(port), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    keys = {
        (fields[1], fields[2])
        for fields in (line.split() for line in scan.stdout.splitlines())
        if len(fields) >= 3 and not fields[0].startswith("#")
    }
    return keys, scan.stdout + scan.stderr


def test_ssh_presents_exactly_the_pinned_host_key(node_vm: NodeFixture) -> None:
    vm = node_vm.vm
    pinned = tuple(node_vm.node.host_key_ed25519_public.split()[:2])
    offered, log = _keyscan(vm.port, "ed25519")
    assert offered == {pinned}, log
    _, out, _ = vm.run("sudo -n cat /etc/ssh/ssh_host_ed25519_key.pub")
    assert tuple(out.split()[:2]) == pinned


def test_ssh_offers_no_unpinned_host_key_types(node_vm: NodeFixture) -> None:
    # A client that prefers ECDSA or RSA (Go's x/crypto/ssh lists ECDSA before ed25519)
    # would otherwise be shown a key nobody pinned and refuse, or worse, trust it.
    offered, log = _keyscan(node_vm.vm.port, "rsa,ecdsa,dsa")
    assert offered == set(), log
    _, out, _ = node_vm.vm.run("ls /etc/ssh/")
    host_keys = sorted(name for name in out.split() if name.startswith("ssh_host_"))
    assert host_keys == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"], host_keys


def test_ssh_refuses_a_wrong_pinned_host_key(node_vm: NodeFixture, tmp_path: Path) -> None:
    _, wrong_pub = generate_ed25519_keypair(tmp_path, "impostor")
    impostor = node_vm.vm.client(host_public_key=wrong_pub)
    rc, out, err = impostor.run("echo connected", check=False)
    assert rc == 255, (rc, out, err)
    assert "connected" not in out
    assert "Host key verification failed" in err or "IDENTIFICATION HAS CHANGED" in err, err
    with pytest.raises(HostKeyVerificationFailed):
        impostor.run("true")
    # ...while the correctly pinned client still works.
    assert node_vm.vm.run("echo connected").stdout.strip() == "connected"
    assert HOST_KEY_ALIAS in node_vm.vm.known_hosts.read_text()


def test_static_network_config_applied(node_vm: NodeFixture) -> None:
    vm = node_vm.vm
    net = NODE_NETWORK
    _, addr, _ = vm.run("ip -o -4 addr show dev eth0")
    assert str(net.address) in addr, addr
    assert vm.run("cat /sys/class/net/eth0/address").stdout.strip() == net.mac
    _, route, _ = vm.run("ip -4 route show default")
    assert f"via {net.gateway} dev eth0" in route, route
    _, resolv, _ = vm.run("cat /etc/resolv.conf")
    assert all(f"nameserver {ip}" in resolv for ip in net.dns), resolv


def test_admin_user_has_passwordless_sudo(node_vm: NodeFixture) -> None:
    vm = node_vm.vm
    assert vm.run("id -un").stdout.strip() == node_vm.node.admin_user
    assert vm.run("sudo -n id -u").stdout.strip() == "0"


def test_password_login_is_disabled(node_vm: NodeFixture) -> None:
    _, out, _ = node_vm.vm.run("sudo -n sshd -T")
    settings = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert settings.get("passwordauthentication") == "no", settings
    assert settings.get("kbdinteractiveauthentication") == "no", settings


def test_hostname_and_etc_hosts(node_vm: NodeFixture) -> None:
    vm = node_vm.vm
    assert vm.run("hostname").stdout.strip() == node_vm.node.hostname
    _, hosts, _ = vm.run("cat /etc/hosts")
    assert node_vm.node.hostname in hosts
    # sudo resolves the host name; without manage_etc_hosts it prints a warning.
    _, _, err = vm.run("sudo -n true")
    assert "unable to resolve host" not in err, err


def test_swap_is_off(node_vm: NodeFixture) -> None:
    vm = node_vm.vm
    assert vm.run("sudo -n swapon --show --noheadings").stdout.strip() == ""
    assert vm.run("cat /proc/swaps").stdout.strip().count("\n") == 0  # header only


@pytest.mark.parametrize("module", ["overlay", "br_netfilter"])
def test_kernel_module_loaded_and_persisted(node_vm: NodeFixture, module: str) -> None:
    vm = node_vm.vm
    loaded = {line.split()[0] for line in vm.run("sudo -n lsmod").stdout.splitlines()[1:] if line}
    assert module in loaded, sorted(loaded)
    persisted = vm.run(
        "cat /etc/modules-load.d/*.conf /usr/lib/modules-load.d/*.conf 2>/dev/null", check=False
    ).stdout.split()
    assert module in persisted


@pytest.mark.parametrize("key", ["net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"])
def test_kubernetes_sysctl(node_vm: NodeFixture, key: str) -> None:
    assert node_vm.vm.run(f"sudo -n sysctl -n {key}").stdout.strip() == "1"


def test_locale_and_guest_agent(node_vm: NodeFixture) -> None:
    vm = node_vm.vm
    assert "C.UTF-8" in vm.run("cat /etc/default/locale").stdout
    assert vm.run("dpkg-query -W -f='${Status}' qemu-guest-agent").stdout == (
        "install ok installed"
    )
    rc, out, err = vm.run("systemctl is-active qemu-guest-agent", check=False)
    assert out.strip() == "active", (rc, out, err)


def test_copy_and_run_with_stdin_round_trip(node_vm: NodeFixture, tmp_path: Path) -> None:
    """The primitives the node-script idempotence tests will rely on."""
    vm = node_vm.vm
    script = tmp_path / "probe.sh"
    script.write_text('#!/bin/sh\nset -eu\necho "arg=$1 user=$(id -un)"\ncat\n')
    script.chmod(0o755)
    vm.copy(script, "/tmp/sk8s/probe.sh")
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    rc, out, err = vm.run("/tmp/sk8s/probe.sh x | sha256sum", stdin=payload)
    assert rc == 0, err
    header = f"arg=x user={node_vm.node.admin_user}\n".encode()
    expected = hashlib.sha256(header + payload).hexdigest()
    assert out.split()[0] == expected
    # root-owned destination via sudo, and copying twice is harmless
    for _ in range(2):
        vm.copy(script, "/usr/local/sbin/sk8s-probe", mode=0o700, sudo=True)
    assert vm.run("sudo -n stat -c %a:%U /usr/local/sbin/sk8s-probe").stdout.strip() == "700:root"
    assert vm.run("sudo -n sh -s", stdin=b"id -u\nexit 3\n", check=False).rc == 3


def test_settings_survive_a_reboot(node_vm: NodeFixture) -> None:
    """Last on purpose: reboots the shared VM. After it, only what the user-data persisted
    (modules-load.d, sysctl.d, fstab, host key) is in effect; runcmd does not run again."""
    vm = node_vm.vm
    TIMINGS["reboot to SSH"] = vm.reboot()
    loaded = {line.split()[0] for line in vm.run("sudo -n lsmod").stdout.splitlines()[1:] if line}
    assert {"overlay", "br_netfilter"} <= loaded, sorted(loaded)
    for key in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
        assert vm.run(f"sudo -n sysctl -n {key}").stdout.strip() == "1", key
    assert vm.run("sudo -n swapon --show --noheadings").stdout.strip() == ""
    assert vm.run("hostname").stdout.strip() == node_vm.node.hostname
    status = vm.wait_cloud_init(check=False)
    assert status.ok, status.report()


def test_pod_firewall_is_loaded_again_after_the_reboot(node_vm: NodeFixture) -> None:
    """After test_settings_survive_a_reboot: the unit node-firewall.sh enabled loaded the
    table at boot, before anything else touched the node."""
    vm = node_vm.vm
    if vm.run(f"test -f /etc/systemd/system/{UNIT}", check=False).rc != 0:
        pytest.skip("node-firewall.sh did not run in this session (tests/vm/test_pod_firewall.py)")
    assert vm.run(f"systemctl is-active {UNIT}").stdout.strip() == "active"
    assert TABLE in vm.run("sudo -n nft list tables").stdout
    net = PodNetwork(vm)
    net.up()
    try:
        assert_pods_are_fenced(net)
    finally:
        net.down()
