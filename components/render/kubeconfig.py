"""The admin kubeconfig and kubeadm's CA pin, computed from PEM text (no cluster round trip)."""

from __future__ import annotations

import base64
import hashlib
import re

import yaml

_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\s*(.+?)\s*-----END \1-----", re.S)


def pem_body(pem: str) -> bytes:
    match = _PEM.search(pem)
    if match is None:
        raise ValueError("not PEM text")
    return base64.b64decode("".join(match.group(2).split()))


def ca_cert_hash(ca_public_key_pem: str) -> str:
    """kubeadm's discovery pin: sha256 over the CA's SubjectPublicKeyInfo (PKIX DER)."""
    if "BEGIN PUBLIC KEY" not in ca_public_key_pem:
        raise ValueError("expected a PKIX 'PUBLIC KEY' PEM block")
    return "sha256:" + hashlib.sha256(pem_body(ca_public_key_pem)).hexdigest()


def render_kubeconfig(cluster_name: str, server: str, ca_cert_pem: str, client_cert_pem: str,
                      client_key_pem: str, user: str = "kubernetes-admin") -> str:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    context = f"{user}@{cluster_name}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {
            "server": server, "certificate-authority-data": b64(ca_cert_pem)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(client_cert_pem),
            "client-key-data": b64(client_key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": context,
    }
    return yaml.safe_dump(document, sort_keys=False)
