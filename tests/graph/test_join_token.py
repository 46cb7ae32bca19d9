"""Joins take their token from the first control plane's issuer when they run (a join retried
after the token expired must still find a valid one): the issuer is installed before any join,
with the public half of the key every join carries, and no join ships a token of its own."""

from __future__ import annotations

import base64

from components.render.kubeadm import JOIN_TOKEN_PLACEHOLDER
from components.render.scripts import render_invocation
from tests.graph.harness import Graph, fake_state
from tests.graph.test_graph import COMMAND, NODES, command, script_params, shipped_yaml

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
PASSWORD = "random:index/randomPassword:RandomPassword"


def decoded(params: dict[str, str], name: str) -> str:
    return base64.b64decode(params[name]).decode()


def shipped_text(params: dict[str, str]) -> str:
    """Every parameter as the node sees it (files decoded)."""
    return "\n".join(decoded(params, k) if k.endswith("_B64") else v for k, v in params.items())


def test_every_join_asks_the_first_control_plane_for_its_token(graph: Graph,
                                                               stack: str) -> None:
    [issuer] = [r for r in graph.of_type(COMMAND) if r.name.endswith("-token-issuer")]
    first = issuer.name.removesuffix("-token-issuer")
    assert graph.depends_on(issuer, command(graph, f"{first}-kubeadm-init"))
    key = graph.named("join-token-ssh-key", PRIVATE_KEY)
    key_state = fake_state(key.type, key.name, key.inputs)
    host_key = graph.named(f"{first}-host-key", PRIVATE_KEY)
    first_host_key = fake_state(host_key.type, host_key.name, host_key.inputs)["publicKeyOpenssh"]
    first_ip = graph.stack_outputs["nodes"][0][first]

    installed = script_params(issuer)
    assert installed["ISSUER_PUBLIC_KEY"] == key_state["publicKeyOpenssh"].strip()
    assert installed["ADMIN_USER"] == graph.stack_outputs["adminUser"][0]
    assert installed["ALLOWED_FROM"] == {"dev": "10.17.0.0/24", "ha": "10.18.0.0/24"}[stack]
    assert decoded(installed, "ISSUER_B64") == render_invocation(
        "issue-join-token.sh", {"TOKEN_TTL": "30m"})

    init_token = ".".join(fake_state(PASSWORD, name, {"length": length})["result"]
                          for name, length in (("join-token-id", 6),
                                               ("join-token-secret", 16)))
    init = shipped_yaml(command(graph, f"{first}-kubeadm-init"), "KUBEADM_CONFIG_B64")[0]
    assert init["bootstrapTokens"][0]["token"] == init_token  # kubeadm init's own, short-lived
    joins = [r for r in graph.of_type(COMMAND) if r.name.endswith("-kubeadm-join")]
    assert len(joins) == len(NODES[stack]) - 1
    for join in joins:
        assert graph.depends_on(join, issuer), join.name
        params = script_params(join)
        assert params["TOKEN_ISSUER_HOST"] == first_ip
        assert params["TOKEN_ISSUER_USER"] == installed["ADMIN_USER"]
        assert decoded(params, "TOKEN_ISSUER_KNOWN_HOSTS_B64") == \
            f"{first_ip} {first_host_key.strip()}\n"
        assert decoded(params, "TOKEN_ISSUER_KEY_B64") == key_state["privateKeyOpenssh"]
        config = shipped_yaml(join, "KUBEADM_JOIN_CONFIG_B64")[0]
        assert config["discovery"]["bootstrapToken"]["token"] == JOIN_TOKEN_PLACEHOLDER
        assert params["TOKEN_PLACEHOLDER"] == JOIN_TOKEN_PLACEHOLDER
        assert init_token not in shipped_text(params)
