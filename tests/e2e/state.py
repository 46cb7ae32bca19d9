"""Reading a deployed stack the way an operator would: its exported state and its nodes over
SSH with the pins the program's steps use (admin key and host keys from the stack)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.e2e.engine import LibvirtNamespace

ADMIN_USER = "k8sadmin"


def resources(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = state["deployment"]["resources"]
    return found


def name_of(resource: Mapping[str, Any]) -> str:
    return str(resource["urn"]).rsplit("::", 1)[1]


def domain_ids(state: Mapping[str, Any]) -> dict[str, str]:
    return {name_of(r): r["id"] for r in resources(state)
            if r["type"] == "libvirt:index/domain:Domain"}


def revealed(value: Any) -> Any:
    """A value of `stack export --show-secrets`: secrets are objects holding their JSON."""
    if isinstance(value, dict) and "plaintext" in value:
        return json.loads(value["plaintext"])
    return value


def secret_strings(state: Mapping[str, Any]) -> list[str]:
    """The generated secrets as `--show-secrets` reveals them: private keys, token parts,
    the key material of the encryption at rest."""
    found: list[str] = []
    for r in resources(state):
        outputs = {k: revealed(v) for k, v in (r.get("outputs") or {}).items()}
        if r["type"] == "tls:index/privateKey:PrivateKey":
            found += [outputs["privateKeyPem"], outputs["privateKeyOpenssh"]]
        elif r["type"] == "random:index/randomPassword:RandomPassword":
            found.append(outputs["result"])
    return [s.strip() for s in found if isinstance(s, str) and s.strip()]


class PinnedSsh:
    """ssh to each node from the namespace, trusting only the host key the stack generated."""

    def __init__(self, ns: LibvirtNamespace, workdir: Path, addresses: Mapping[str, str],
                 export: Callable[[], dict[str, Any]], admin_key: str) -> None:
        self.ns, self.addresses = ns, dict(addresses)
        self.key = workdir / "admin_ed25519"
        self.key.write_text(admin_key)
        self.key.chmod(0o600)
        self.known_hosts: dict[str, Path] = {}
        for r in resources(export()):
            name = name_of(r)
            if r["type"] == "tls:index/privateKey:PrivateKey" and name.endswith("-host-key"):
                node = name.removesuffix("-host-key")
                path = workdir / f"known_hosts-{node}"
                public = revealed(r["outputs"]["publicKeyOpenssh"]).strip()
                path.write_text(f"{self.addresses[node]} {public}\n")
                self.known_hosts[node] = path

    def run(self, node: str, command: str, *, known_hosts: Path | None = None,
            check: bool = True, timeout: float = 600.0) -> Any:
        return self.ns.run([
            "ssh", "-F", "/dev/null", "-i", str(self.key), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts[node]}",
            "-o", "ConnectTimeout=15", f"{ADMIN_USER}@{self.addresses[node]}", command],
            check=check, timeout=timeout)

    def boot_id(self, node: str) -> str:
        return str(self.run(node, "cat /proc/sys/kernel/random/boot_id").stdout.strip())

    def steps_run_this_boot(self, node: str) -> int:
        """Remote steps run on `node` since it booted: pulumi-command runs each as
        `sudo -n bash <temporary file>`, which sudo logs to the journal."""
        log = self.run(node, "sudo journalctl -b --no-pager -o cat _COMM=sudo").stdout
        return len([line for line in log.splitlines()
                    if "COMMAND=/usr/bin/bash /tmp/tmp." in line])
