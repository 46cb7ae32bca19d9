"""The first control plane's maintenance helper: a worker's upgrade step has itself drained and
uncordoned through it (workers hold no admin credentials). Its key runs the helper only, and the
helper acts on the calling node alone."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from components.render.scripts import b64, render_invocation
from tests.scripts.fakes import FakeNode

PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMaintenanceKey"
HELPER = render_invocation("node-maintenance.sh", {
    "NODES_B64": b64("10.18.0.13 gvisor-1\n10.18.0.14 gvisor-2\n"), "DRAIN_TIMEOUT": "10m"})


@pytest.fixture
def node(tmp_path: Path) -> FakeNode:
    fake = FakeNode(tmp_path)
    (tmp_path / "helper").write_text(HELPER)
    return fake


def helper(node: FakeNode, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(node.state.parent / "helper"), *args],
                          env=node.env(), capture_output=True, text=True, timeout=60)


def test_a_node_drains_and_uncordons_itself_only(node: FakeNode) -> None:
    assert helper(node, "10.18.0.14", "drain").returncode == 0
    assert helper(node, "10.18.0.14", "uncordon").returncode == 0
    assert [c.split()[:3] for c in node.calls("kubectl")] == [
        ["kubectl", "drain", "gvisor-2"], ["kubectl", "uncordon", "gvisor-2"]]


@pytest.mark.parametrize(("args", "fragment"), [
    (("10.18.0.99", "drain"), "10.18.0.99 is no node of this cluster"),
    (("10.18.0.13", "delete"), "unknown action 'delete'"),
    (("10.18.0.13", "drain gvisor-2"), "unknown action 'drain gvisor-2'"),
    ((), "an unknown address is no node"),
])
def test_anything_else_is_refused(node: FakeNode, args: tuple[str, ...], fragment: str) -> None:
    result = helper(node, *args)
    assert result.returncode != 0 and fragment in result.stderr
    assert node.calls("kubectl") == []


def test_the_key_runs_the_helper_with_the_callers_address(node: FakeNode,
                                                          tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    keys = home / ".ssh/authorized_keys"
    keys.write_text("ssh-ed25519 AAAAadmin admin\n")
    result = node.run("maintenance-helper.sh", {
        "HELPER_B64": b64(HELPER), "HELPER_PUBLIC_KEY": PUBLIC, "ADMIN_USER": "k8sadmin",
        "ALLOWED_FROM": "10.18.0.0/24", "HELPER_PATH": str(home / "helper"),
        "AUTHORIZED_KEYS": str(keys)})
    assert result.returncode == 0, result.stderr
    assert (home / "helper").read_text() == HELPER
    line = keys.read_text().splitlines()[1]
    assert line.startswith('restrict,from="10.18.0.0/24",command="')
    assert line.endswith(f"{PUBLIC} sandboxed-k8s-node-maintenance")
    # What sshd runs: the option's command, unescaped, by the user's shell, with the caller's
    # address and request in the environment. sudo gets both as plain arguments.
    command = re.search(r'command="((?:[^"\\]|\\.)*)"', line)
    assert command is not None
    node.add("sudo", '#!/bin/sh\nfor a in "$@"; do printf "[%s]" "$a"; done\n')
    ran = subprocess.run(["bash", "-c", command[1].replace('\\"', '"')], text=True,
                         capture_output=True, env={**node.env(),
                                                   "SSH_CLIENT": "10.18.0.13 53422 22",
                                                   "SSH_ORIGINAL_COMMAND": "drain; rm -rf /"})
    assert ran.stdout == f"[-n][{home / 'helper'}][10.18.0.13][drain; rm -rf /]"
