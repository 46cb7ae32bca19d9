"""Secrets are encrypted at rest in etcd, and audited without their content."""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from tests.apiserver.stack import AppliedStack

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]

AESCBC_PREFIX = b"k8s:enc:aescbc:v1:"


def test_secret_is_encrypted_in_etcd_and_audited_at_metadata_level(
        applied: AppliedStack) -> None:
    ns, name = applied.tenant(), f"probe-{secrets.token_hex(3)}"
    value = f"plaintext-{secrets.token_hex(8)}"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
              "stringData": {"password": value}}
    applied.kubectl.run("create", "-f", "-", stdin=json.dumps(secret))

    stored = applied.plane.etcd_value(f"/registry/secrets/{ns}/{name}")
    assert stored is not None, "the secret is not in etcd"
    assert stored.startswith(AESCBC_PREFIX), stored[:40]
    assert value.encode() not in stored

    encoded = base64.b64encode(value.encode()).decode()
    log = applied.audit_log.read_text()
    assert value not in log and encoded not in log, "the secret's value is in the audit log"
    events = [json.loads(line) for line in log.splitlines() if name in line]
    creates = [e for e in events if e["verb"] == "create"
               and e["objectRef"].get("resource") == "secrets" and e["stage"] == "ResponseComplete"]
    assert creates, f"no audit event for creating secret {ns}/{name}"
    assert all(e["level"] == "Metadata" for e in creates), creates
    assert all("requestObject" not in e and "responseObject" not in e for e in events)
