"""SSH identities: the admin key pair nodes trust, one host key per node that every remote
command pins (so a swapped host key makes provisioning fail instead of trusting a stranger), and
the keys nodes use on the first control plane, each able to run one program there: joining
nodes ask its token issuer for a join token, upgrading workers its maintenance helper to drain
and uncordon them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls


@dataclass(frozen=True)
class NodeAccessArgs:
    node_names: Sequence[str]


class NodeAccess(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodeAccessArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:access:NodeAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.admin_key = tls.PrivateKey("admin-ssh-key", algorithm="ED25519", opts=child)
        self.host_keys = {
            node: tls.PrivateKey(f"{node}-host-key", algorithm="ED25519", opts=child)
            for node in args.node_names
        }
        self.join_token_key = tls.PrivateKey("join-token-ssh-key", algorithm="ED25519",
                                             opts=child)
        self.maintenance_key = tls.PrivateKey("maintenance-ssh-key", algorithm="ED25519",
                                              opts=child)
        self.admin_public_key: pulumi.Output[str] = self.admin_key.public_key_openssh
        self.admin_private_key: pulumi.Output[str] = pulumi.Output.secret(
            self.admin_key.private_key_openssh)
        self.register_outputs({"admin_public_key": self.admin_public_key})

    @property
    def join_token_private_key(self) -> pulumi.Output[str]:
        return pulumi.Output.secret(self.join_token_key.private_key_openssh)

    @property
    def maintenance_private_key(self) -> pulumi.Output[str]:
        return pulumi.Output.secret(self.maintenance_key.private_key_openssh)

    def host_public_key(self, node: str) -> pulumi.Output[str]:
        return self.host_keys[node].public_key_openssh

    def host_private_key(self, node: str) -> pulumi.Output[str]:
        return pulumi.Output.secret(self.host_keys[node].private_key_openssh)
