"""Mocks whose keys and certificates are real: the program evaluated with them ships working
PKI, SSH identities and kubeconfig, so its cloud-init documents and remote steps can be run
on real machines exactly as rendered (tests/cluster). Everything else stays a mock.

Only what the program asks the tls provider for is implemented: RSA and ED25519 keys, a
self-signed CA, a CSR and a certificate signed by a CA, with the inputs the program sets.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.graph.harness import FakeProviders, unwrap

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_KEY_USAGES = {"digital_signature": "digital_signature", "key_encipherment": "key_encipherment",
               "cert_signing": "key_cert_sign", "crl_signing": "crl_sign"}
_EXTENDED_USAGES = {"client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
                    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH}


def _key_state(key: PrivateKey) -> dict[str, str]:
    public = key.public_key()
    pkcs8 = serialization.PrivateFormat.PKCS8 if isinstance(key, ed25519.Ed25519PrivateKey) \
        else serialization.PrivateFormat.TraditionalOpenSSL
    return {
        "privateKeyPem": key.private_bytes(serialization.Encoding.PEM, pkcs8,
                                           serialization.NoEncryption()).decode(),
        "privateKeyOpenssh": key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.OpenSSH,
                                               serialization.NoEncryption()).decode(),
        "publicKeyPem": public.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo
                                            ).decode(),
        "publicKeyOpenssh": public.public_bytes(serialization.Encoding.OpenSSH,
                                                serialization.PublicFormat.OpenSSH
                                                ).decode() + "\n",
    }


def _private_key(inputs: Mapping[str, Any]) -> PrivateKey:
    if inputs.get("algorithm") == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    if inputs.get("algorithm") == "RSA":
        return rsa.generate_private_key(65537, int(inputs.get("rsaBits", 2048)))
    raise NotImplementedError(f"tls.PrivateKey algorithm {inputs.get('algorithm')!r}")


def _load_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _subject(raw: Mapping[str, Any] | None) -> x509.Name:
    raw = raw or {}
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, raw["commonName"])]
    if raw.get("organization"):
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, raw["organization"]))
    return x509.Name(attributes)


def _certificate(subject: x509.Name, issuer: x509.Name, public: Any, signer: rsa.RSAPrivateKey,
                 inputs: Mapping[str, Any]) -> str:
    now = datetime.datetime.now(datetime.UTC)
    uses = list(inputs.get("allowedUses") or [])
    usage = {name: False for name in ("digital_signature", "content_commitment",
                                      "key_encipherment", "data_encipherment", "key_agreement",
                                      "key_cert_sign", "crl_sign", "encipher_only",
                                      "decipher_only")}
    usage.update({_KEY_USAGES[u]: True for u in uses if u in _KEY_USAGES})
    is_ca = bool(inputs.get("isCaCertificate"))
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(
                   hours=int(inputs["validityPeriodHours"])))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(**usage), critical=True))
    extended = [_EXTENDED_USAGES[u] for u in uses if u in _EXTENDED_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if is_ca:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public),
                                        critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def real_tls_state(typ: str, inputs: Mapping[str, Any]) -> dict[str, str] | None:
    """What the tls provider would compute for these inputs, for real; None for other types."""
    if typ == "tls:index/privateKey:PrivateKey":
        return _key_state(_private_key(inputs))
    if typ == "tls:index/selfSignedCert:SelfSignedCert":
        key = _load_key(inputs["privateKeyPem"])
        name = _subject(inputs.get("subject"))
        return {"certPem": _certificate(name, name, key.public_key(), key, inputs)}
    if typ == "tls:index/certRequest:CertRequest":
        key = _load_key(inputs["privateKeyPem"])
        csr = x509.CertificateSigningRequestBuilder().subject_name(
            _subject(inputs.get("subject"))).sign(key, hashes.SHA256())
        return {"certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode()}
    if typ == "tls:index/locallySignedCert:LocallySignedCert":
        csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
        ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
        return {"certPem": _certificate(csr.subject, ca.subject, csr.public_key(),
                                        _load_key(inputs["caPrivateKeyPem"]), inputs)}
    return None


class RealTlsProviders(FakeProviders):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = real_tls_state(args.typ, unwrap(dict(args.inputs)))
        if state is None:
            return super().new_resource(args)
        return f"{args.name}-id", {**args.inputs, **state}
