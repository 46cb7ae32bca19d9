"""The CA pin and the admin kubeconfig."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import yaml

from components.render.kubeconfig import ca_cert_hash, render_kubeconfig


def test_ca_hash_matches_openssl(tmp_path: Path) -> None:
    # kubeadm's documented way to compute --discovery-token-ca-cert-hash.
    key = tmp_path / "ca.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                   capture_output=True)
    public_pem = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout"], check=True,
                                capture_output=True, text=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"],
                         input=public_pem.encode(), check=True, capture_output=True).stdout
    expected = subprocess.run(["sha256sum"], input=der, check=True,
                              capture_output=True).stdout.decode().split()[0]
    assert ca_cert_hash(public_pem) == f"sha256:{expected}"


def test_ca_hash_needs_a_public_key() -> None:
    with pytest.raises(ValueError):
        ca_cert_hash("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_kubeconfig() -> None:
    doc = yaml.safe_load(render_kubeconfig("demo", "https://10.17.0.5:6443", "CA", "CERT", "KEY"))
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.17.0.5:6443"
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == b"CA"
    assert base64.b64decode(doc["users"][0]["user"]["client-key-data"]) == b"KEY"
    assert doc["current-context"] == doc["contexts"][0]["name"]
