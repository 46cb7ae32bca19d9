"""The program under mocks with real keys and certificates (tests/graph/realtls.py): what it
ships is genuine PKI, checked here by openssl and ssh-keygen."""

from __future__ import annotations

import base64
import functools
import hashlib
import subprocess
from pathlib import Path

import yaml

from components.pki import ADMIN_GROUP
from tests.graph.harness import Graph, run_program, stack_config
from tests.graph.realtls import RealTlsProviders
from tests.graph.test_graph import command, script_params, shipped_yaml


@functools.cache
def real_graph() -> Graph:
    return run_program(stack_config("dev"), "dev", mocks=RealTlsProviders())


def openssl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_the_admin_kubeconfig_holds_a_client_certificate_signed_by_the_cluster_ca(
        tmp_path: Path) -> None:
    kubeconfig = yaml.safe_load(real_graph().stack_outputs["kubeconfig"][0])
    ca = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
    user = kubeconfig["users"][0]["user"]
    client = base64.b64decode(user["client-certificate-data"])
    (tmp_path / "ca.pem").write_bytes(ca)
    (tmp_path / "client.pem").write_bytes(client)
    verified = openssl("verify", "-CAfile", str(tmp_path / "ca.pem"), "-purpose", "sslclient",
                       str(tmp_path / "client.pem"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    subject = openssl("x509", "-noout", "-subject", "-in", str(tmp_path / "client.pem")).stdout
    assert f"O={ADMIN_GROUP}" in subject.replace(" ", "")
    ca_text = openssl("x509", "-noout", "-text", "-in", str(tmp_path / "ca.pem")).stdout
    assert "CA:TRUE" in ca_text and "Certificate Sign" in ca_text
    # The client key in the kubeconfig belongs to the certificate.
    key = base64.b64decode(user["client-key-data"]).decode()
    key_pub = openssl("pkey", "-pubout", stdin=key).stdout
    cert_pub = openssl("x509", "-noout", "-pubkey", "-in", str(tmp_path / "client.pem")).stdout
    assert key_pub == cert_pub


def test_the_join_discovery_pin_is_the_hash_of_the_shipped_ca(tmp_path: Path) -> None:
    graph = real_graph()
    ca_pem = base64.b64decode(script_params(command(graph, "master-kubeadm-init"))
                              ["CA_CRT_B64"]).decode()
    der = subprocess.run(["openssl", "x509", "-noout", "-pubkey"], input=ca_pem,
                         capture_output=True, text=True, check=True).stdout
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der.encode(),
                          capture_output=True, check=True).stdout
    join = shipped_yaml(command(graph, "worker1-kubeadm-join"), "KUBEADM_JOIN_CONFIG_B64")[0]
    assert join["discovery"]["bootstrapToken"]["caCertHashes"] == [
        "sha256:" + hashlib.sha256(spki).hexdigest()]


def test_ssh_identities_are_real_key_pairs(tmp_path: Path) -> None:
    graph = real_graph()
    private = tmp_path / "admin"
    private.write_text(graph.stack_outputs["adminSshPrivateKey"][0])
    private.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(private)], capture_output=True,
                             text=True, check=True).stdout.split()[:2]
    user_data = yaml.safe_load(graph.seed_files("worker1")["user-data"])
    assert user_data["users"][0]["ssh_authorized_keys"][0].split()[:2] == derived
    host_private = tmp_path / "host"
    host_private.write_text(user_data["ssh_keys"]["ed25519_private"])
    host_private.chmod(0o600)
    host_public = subprocess.run(["ssh-keygen", "-y", "-f", str(host_private)],
                                 capture_output=True, text=True, check=True).stdout.split()[:2]
    assert user_data["ssh_keys"]["ed25519_public"].split()[:2] == host_public


def test_the_join_key_is_the_pair_the_token_issuer_authorizes(tmp_path: Path) -> None:
    graph = real_graph()
    join = script_params(command(graph, "worker1-kubeadm-join"))
    private = tmp_path / "join"
    private.write_bytes(base64.b64decode(join["TOKEN_ISSUER_KEY_B64"]))
    private.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(private)], capture_output=True,
                             text=True, check=True).stdout.split()[:2]
    issuer = script_params(command(graph, "master-token-issuer"))
    assert issuer["ISSUER_PUBLIC_KEY"].split() == derived
