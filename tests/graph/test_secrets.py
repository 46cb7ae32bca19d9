"""Secrets stay secret: in resource inputs, stack outputs, and never in command text."""

from __future__ import annotations

from typing import Any

from tests.graph.harness import Graph, fake_state, is_secret

COMMAND = "command:remote:Command"
SENSITIVE_STEPS = ("-kubeadm-init", "-kubeadm-join")


def secret_values(graph: Graph) -> list[str]:
    """Every generated secret: private keys and the join token parts."""
    values: list[str] = []
    for r in graph.resources:
        state = fake_state(r.type, r.name, r.inputs)
        if r.type == "tls:index/privateKey:PrivateKey":
            values += [state["privateKeyPem"], state["privateKeyOpenssh"]]
        if r.type in ("random:index/randomString:RandomString",
                      "random:index/randomPassword:RandomPassword"):
            values.append(state["result"])
        if r.type == "random:index/randomBytes:RandomBytes":
            values.append(state["base64"])
    assert len(values) >= 10
    return values


def plain_strings(value: Any) -> list[str]:
    """Strings of an input that are NOT under a secret marker."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in plain_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []


def test_no_secret_in_any_command_text(graph: Graph) -> None:
    secrets = secret_values(graph)
    for r in graph.of_type(COMMAND):
        for field in ("create", "update", "delete"):
            text = r.inputs.get(field) or ""
            assert not any(s.strip() in text for s in secrets), (r.name, field)


def test_no_secret_in_any_plain_input(graph: Graph) -> None:
    secrets = [s.strip() for s in secret_values(graph)]
    for r in graph.resources:
        for text in plain_strings(r.raw_inputs):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{r.type} {r.name} has a secret in a non-secret input"


def test_steps_carrying_token_or_keys_are_secret(graph: Graph) -> None:
    for r in graph.of_type(COMMAND):
        assert is_secret(r.raw_inputs["connection"]), r.name  # holds the SSH private key
        if r.name.endswith(SENSITIVE_STEPS):
            assert is_secret(r.raw_inputs["stdin"]), r.name
            assert r.inputs["logging"] == "none", r.name
            assert {"stdout", "stderr"} <= set(r.additional_secret_outputs), r.name


def test_no_generated_secret_is_a_resource_id(graph: Graph) -> None:
    # pulumi-random keeps RandomString's result and RandomBytes' base64 as the resource id,
    # which the state stores in plain text (ids cannot be secret). RandomPassword's id is
    # "none" and its result secret.
    assert not graph.of_type("random:index/randomString:RandomString")
    assert not graph.of_type("random:index/randomBytes:RandomBytes")
    assert len(graph.of_type("random:index/randomPassword:RandomPassword")) == 3


def test_cloud_init_user_data_is_secret(graph: Graph) -> None:
    seeds = graph.seed_images()
    assert seeds
    for node, step in seeds.items():
        assert is_secret(step.raw_inputs["stdin"]), node
        assert "ed25519_private" in graph.seed_files(node)["user-data"]
        assert step.inputs["logging"] == "none", node


def test_host_keys_are_pinned_in_every_connection(graph: Graph) -> None:
    host_keys = {r.name.removesuffix("-host-key"): fake_state(r.type, r.name, r.inputs)
                 for r in graph.of_type("tls:index/privateKey:PrivateKey")
                 if r.name.endswith("-host-key")}
    for r in graph.of_type(COMMAND):
        node = next(n for n in host_keys if r.name.startswith(f"{n}-"))
        connection = r.inputs["connection"]
        assert connection["hostKey"] == host_keys[node]["publicKeyOpenssh"], r.name
        assert connection["dialErrorLimit"] > 0


def test_stack_outputs_secrets(graph: Graph) -> None:
    outputs = graph.stack_outputs
    assert outputs["kubeconfig"][1] is True
    assert outputs["adminSshPrivateKey"][1] is True
    assert outputs["controlPlaneEndpoint"][1] is False
    assert "client-key-data" in outputs["kubeconfig"][0]
