"""Join tokens are issued when a join runs: kubeadm-join.sh asks the first control plane's issuer
(issue-join-token.sh behind token-issuer.sh's forced-command key) for a fresh token each time it
actually joins, so a join retried after a token expired still finds a valid one."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.render.kubeadm import JOIN_TOKEN_PLACEHOLDER, NodeRegistration, render_join_config
from components.render.scripts import b64, render_invocation
from tests.scripts.fakes import FakeNode

ISSUER_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nissuer\n-----END OPENSSH PRIVATE KEY-----\n"
KNOWN_HOSTS = "10.17.0.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheFirstControlPlane\n"
JOIN_CONFIG = render_join_config(NodeRegistration("worker1", {}, (), False), "10.17.0.10:6443",
                                 JOIN_TOKEN_PLACEHOLDER, "sha256:" + "a" * 64, "10.17.0.11")


ISSUER = render_invocation("issue-join-token.sh", {"TOKEN_TTL": "30m"})


@pytest.fixture
def node(tmp_path: Path) -> FakeNode:
    fake = FakeNode(tmp_path)
    (tmp_path / "issuer").write_text(ISSUER)  # what the forced command runs (fake ssh)
    return fake


def join_env(node: FakeNode) -> dict[str, str]:
    return {"FAKE_ISSUER": str(node.state.parent / "issuer"), "NODE_NAME": "worker1",
            "KUBEADM_JOIN_CONFIG_B64": b64(JOIN_CONFIG),
            "TOKEN_PLACEHOLDER": JOIN_TOKEN_PLACEHOLDER, "TOKEN_ISSUER_HOST": "10.17.0.10",
            "TOKEN_ISSUER_USER": "k8sadmin", "TOKEN_ISSUER_KEY_B64": b64(ISSUER_KEY),
            "TOKEN_ISSUER_KNOWN_HOSTS_B64": b64(KNOWN_HOSTS),
            "ISSUER_ATTEMPTS": "2", "ISSUER_RETRY_SECONDS": "0", "JOIN_ATTEMPTS": "1"}


def expire_every_token(node: FakeNode) -> None:
    tokens = node.state / "tokens"
    tokens.write_text(tokens.read_text().replace(" valid", " expired"))


def test_a_join_retried_after_its_token_expired_gets_a_new_one(node: FakeNode) -> None:
    (node.state / "fail-join").touch()
    failed = node.run("kubeadm-join.sh", join_env(node))
    assert failed.returncode != 0
    assert node.read("tokens") == "tok001.0000000000000001 valid\n"
    # Hours later: the first token expired; the retry asks for its own.
    expire_every_token(node)
    (node.state / "fail-join").unlink()
    retried = node.run("kubeadm-join.sh", join_env(node))
    assert retried.returncode == 0, retried.stderr
    assert node.read("joined-with") == "tok002.0000000000000002\n"
    # Over the pinned connection, with the issuer's key only.
    assert node.read("ssh-key") == ISSUER_KEY
    assert node.read("ssh-known-hosts") == KNOWN_HOSTS
    [ssh] = node.calls("ssh")[-1:]
    assert "StrictHostKeyChecking=yes" in ssh and "BatchMode=yes" in ssh
    assert ssh.endswith("k8sadmin@10.17.0.10")
    # The kept config is the rendered one: no live token lies around on the node.
    kept = (node.k8s_dir / "sandboxed-k8s/kubeadm-join.yaml").read_text()
    assert JOIN_TOKEN_PLACEHOLDER in kept and "tok00" not in kept
    # Joined: a further run asks for no token at all.
    again = node.run("kubeadm-join.sh", join_env(node))
    assert again.returncode == 0 and "node already joined" in again.stderr
    assert node.read("counter") == "2\n"


def test_a_join_without_an_issuer_fails_naming_it(node: FakeNode) -> None:
    (node.state / "ssh-down").touch()
    result = node.run("kubeadm-join.sh", join_env(node))
    assert result.returncode != 0
    assert "the first control plane (10.17.0.10) issued no join token" in result.stderr
    assert len(node.calls("ssh")) == 2
    assert not any(c.startswith("kubeadm join") for c in node.calls("kubeadm"))


def test_the_issuer_prints_a_fresh_token_and_nothing_else(node: FakeNode) -> None:
    first = node.run("issue-join-token.sh", {"TOKEN_TTL": "30m"})
    expire_every_token(node)
    second = node.run("issue-join-token.sh", {"TOKEN_TTL": "30m"})
    assert (first.stdout, second.stdout) == ("tok001.0000000000000001\n",
                                             "tok002.0000000000000002\n")
    assert "tok002.0000000000000002 valid" in node.read("tokens")
    assert "kubeadm token create --ttl 30m --description sandboxed-k8s node join" in \
        node.calls("kubeadm")


def test_the_issuer_fails_closed_without_a_token(node: FakeNode) -> None:
    node.add("kubeadm", "#!/bin/sh\necho 'error: no API server' >&2\nexit 1\n")
    result = node.run("issue-join-token.sh", {"TOKEN_TTL": "30m"})
    assert result.returncode != 0 and result.stdout == ""
    assert "kubeadm could not create a join token" in result.stderr


ISSUER_PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJoinTokenKey"
ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdminKey admin\n"


def issuer_env(node: FakeNode, home: Path, public_key: str = ISSUER_PUBLIC) -> dict[str, str]:
    return {"ISSUER_B64": b64(ISSUER),
            "ISSUER_PUBLIC_KEY": public_key, "ADMIN_USER": "k8sadmin",
            "ALLOWED_FROM": "10.17.0.0/24", "ISSUER_PATH": str(home / "issuer"),
            "AUTHORIZED_KEYS": str(home / ".ssh/authorized_keys")}


def test_the_issuer_key_can_run_the_issuer_only(node: FakeNode, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    keys = home / ".ssh/authorized_keys"
    keys.write_text(ADMIN_KEY)
    result = node.run("token-issuer.sh", issuer_env(node, home))
    assert result.returncode == 0, result.stderr
    installed = home / "issuer"
    assert installed.read_text() == ISSUER
    assert installed.stat().st_mode & 0o777 == 0o700
    assert keys.read_text() == ADMIN_KEY + (
        f'restrict,from="10.17.0.0/24",command="sudo -n {installed}" {ISSUER_PUBLIC} '
        "sandboxed-k8s-join-token\n")
    assert keys.stat().st_mode & 0o777 == 0o600
    # The issuer was tried once, here, rather than failing in every join.
    assert node.read("counter") == "1\n"
    # A new key replaces ours; the admin's stays.
    rotated = ISSUER_PUBLIC + "Rotated"
    assert node.run("token-issuer.sh", issuer_env(node, home, rotated)).returncode == 0
    lines = keys.read_text().splitlines()
    assert lines[0] == ADMIN_KEY.strip() and len(lines) == 2 and rotated in lines[1]


def test_the_issuer_key_must_be_one_public_key(node: FakeNode, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/authorized_keys").write_text(ADMIN_KEY)
    injected = ISSUER_PUBLIC + '\ncommand="/bin/sh" ssh-ed25519 AAAAother'
    result = node.run("token-issuer.sh", issuer_env(node, home, injected))
    assert result.returncode != 0 and "not one ssh-ed25519 public key" in result.stderr
    assert (home / ".ssh/authorized_keys").read_text() == ADMIN_KEY
