"""Fixed stand-ins for what the providers compute (keys, certificates, random values, ids), so
the program can be evaluated without the Pulumi engine, its plugins or any cloud, and two
evaluations give the same bytes."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import pulumi

# Outputs the real providers compute and keep secret, per resource type: what `render` must
# never print. RandomString's result is not secret upstream; the program must not use it for
# secrets, but if it ever does, it is still kept out of the output.
SECRET_OUTPUTS: Mapping[str, tuple[str, ...]] = {
    "tls:index/privateKey:PrivateKey": ("privateKeyPem", "privateKeyOpenssh",
                                        "privateKeyPemPkcs8"),
    "random:index/randomPassword:RandomPassword": ("result", "bcryptHash"),
    "random:index/randomString:RandomString": ("result",),
    "random:index/randomBytes:RandomBytes": ("base64", "hex"),
}


def _fake_bytes(seed: str, n: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


def _pem(kind: str, seed: str, n: int = 96) -> str:
    body = base64.b64encode(_fake_bytes(seed, n)).decode()
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


def fake_state(typ: str, name: str, inputs: Mapping[str, Any],
               seed: str = "") -> dict[str, Any]:
    """Deterministic stand-ins for what providers compute (keys, certificates, random).
    `seed` changes the secret values only (private keys, random values)."""
    def secret(kind: str) -> str:
        return f"{kind}/{seed}/{name}" if seed else f"{kind}/{name}"

    if typ == "tls:index/privateKey:PrivateKey":
        key = base64.b64encode(_fake_bytes(name, 51)).decode()
        return {
            "privateKeyPem": _pem("RSA PRIVATE KEY", secret("priv")),
            "privateKeyOpenssh": _pem("OPENSSH PRIVATE KEY", secret("ssh")),
            "publicKeyPem": _pem("PUBLIC KEY", "pub/" + name, 294),
            "publicKeyOpenssh": f"ssh-ed25519 {key}\n",
        }
    if typ in ("tls:index/selfSignedCert:SelfSignedCert",
               "tls:index/locallySignedCert:LocallySignedCert"):
        return {"certPem": _pem("CERTIFICATE", "cert/" + name)}
    if typ == "tls:index/certRequest:CertRequest":
        return {"certRequestPem": _pem("CERTIFICATE REQUEST", "csr/" + name)}
    if typ in ("random:index/randomString:RandomString",
               "random:index/randomPassword:RandomPassword"):
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        digest = _fake_bytes(secret("random"), 64)
        length = int(inputs.get("length", 16))
        return {"result": "".join(alphabet[b % len(alphabet)] for b in digest[:length])}
    if typ == "random:index/randomBytes:RandomBytes":
        raw = _fake_bytes(secret("bytes"), int(inputs.get("length", 32)))
        return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}
    if typ == "command:local:Command":  # the local scripts print the path of what they made
        folder = "seeds" if name.endswith("-seed-image") else "images"
        return {"stdout": f"/cache/sandboxed-k8s/{folder}/{name}.img\n"}
    return {}


READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"


class FakeProviders(pulumi.runtime.Mocks):
    """Every resource gets the id `<name>-id` and its inputs plus `fake_state` (its stand-in
    secrets varied by `seed`) as outputs. `deployed`: the stack output `deployed` a previous
    `up` left (None: a new stack); `outputs`: all of that `up`'s outputs instead."""

    def __init__(self, deployed: Mapping[str, Any] | None = None,
                 outputs: Mapping[str, Any] | None = None, *, seed: str = "") -> None:
        self.seed = seed
        self.outputs = dict(outputs or ({} if deployed is None else {"deployed": deployed}))
        self.stack_reads: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = fake_state(args.typ, args.name, args.inputs, self.seed)
        return f"{args.name}-id", {**args.inputs, **state}

    def call(self, args: pulumi.runtime.MockCallArgs
             ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == READ_STACK_OUTPUTS:  # the engine's answer: the stack's last outputs
            self.stack_reads.append(args.args["name"])
            return {"name": args.args["name"], "outputs": self.outputs,
                    "secretOutputNames": []}, []
        return {}, []
