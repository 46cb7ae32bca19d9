"""Runs the real program (__main__.py) under Pulumi mocks and records the resulting graph:
every registration with its type, name, parent, dependencies, provider and raw (secret-marked)
inputs."""

from __future__ import annotations

import base64
import hashlib
import json
import runpy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import config as runtime_config
from pulumi.runtime import settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "sandboxed-k8s"
ORGANIZATION = "organization"  # what a self-managed (file) backend calls every organization
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"


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


def fake_state(typ: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Deterministic stand-ins for what providers compute (keys, certificates, random)."""
    if typ == "tls:index/privateKey:PrivateKey":
        key = base64.b64encode(_fake_bytes(name, 51)).decode()
        return {
            "privateKeyPem": _pem("RSA PRIVATE KEY", "priv/" + name),
            "privateKeyOpenssh": _pem("OPENSSH PRIVATE KEY", "ssh/" + name),
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
        digest = _fake_bytes("random/" + name, 64)
        length = int(inputs.get("length", 16))
        return {"result": "".join(alphabet[b % len(alphabet)] for b in digest[:length])}
    if typ == "random:index/randomBytes:RandomBytes":
        raw = _fake_bytes("bytes/" + name, int(inputs.get("length", 32)))
        return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}
    if typ == "command:local:Command":  # fetch-base-image.sh prints the verified copy's path
        return {"stdout": f"/cache/sandboxed-k8s/images/{name}.img\n"}
    return {}


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def unwrap(value: Any) -> Any:
    """Raw inputs with secret markers removed (values kept), recursively."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    dependencies: list[str]
    # Input property -> the resources whose outputs flow into it (what makes the engine
    # re-evaluate the property when one of them is replaced).
    property_dependencies: dict[str, list[str]]
    provider: str
    raw_inputs: dict[str, Any]
    additional_secret_outputs: list[str]

    @property
    def inputs(self) -> dict[str, Any]:
        inputs: dict[str, Any] = unwrap(self.raw_inputs)
        return inputs


@dataclass
class Graph:
    resources: list[Registration] = field(default_factory=list)
    stack_outputs: dict[str, tuple[Any, bool]] = field(default_factory=dict)  # value, secret

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.resources if r.type == typ]

    def named(self, name: str, typ: str | None = None) -> Registration:
        found = [r for r in self.resources if r.name == name and (typ is None or r.type == typ)]
        assert len(found) == 1, f"expected one resource named {name!r}, found {len(found)}"
        return found[0]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.resources}

    def edges(self, urn: str) -> set[str]:
        """What a resource waits for: explicit/implicit dependencies and its provider."""
        r = self.by_urn()[urn]
        deps = set(r.dependencies)
        if r.provider:  # "<provider urn>::<provider id>"
            deps.add(r.provider.rsplit("::", 1)[0])
        return deps

    def waits_for(self, urn: str) -> set[str]:
        """Direct edges of `urn`, a component standing for all its descendants."""
        index = self.by_urn()
        children: dict[str, list[str]] = {}
        for r in self.resources:
            children.setdefault(r.parent, []).append(r.urn)
        return {t for dep in self.edges(urn)
                for t in [dep, *self._descendants(dep, children)] if t in index}

    def ancestors(self, urn: str) -> set[str]:
        """Everything `urn` transitively waits for."""
        seen: set[str] = set()
        stack = [urn]
        while stack:
            for target in self.waits_for(stack.pop()) - seen:
                seen.add(target)
                stack.append(target)
        return seen

    @staticmethod
    def _descendants(urn: str, children: Mapping[str, list[str]]) -> Iterator[str]:
        for child in children.get(urn, []):
            yield child
            yield from Graph._descendants(child, children)

    def critical_path(self, typ: str,
                      counted: Callable[[Registration], bool] = lambda r: True) -> int:
        """The longest chain of `typ` resources (those `counted`) each waiting for the
        previous one."""
        index = self.by_urn()
        depth: dict[str, int] = {}

        def visit(urn: str) -> int:
            if urn not in depth:
                own = 1 if index[urn].type == typ and counted(index[urn]) else 0
                depth[urn] = own + max((visit(d) for d in self.waits_for(urn)), default=0)
            return depth[urn]

        return max((visit(r.urn) for r in self.resources), default=0)

    def in_dependency_order(self, registrations: Sequence[Registration]) -> list[Registration]:
        """`registrations`, each after those of them it transitively waits for; among those
        ready together, in the order given."""
        urns = {r.urn for r in registrations}
        waits = {r.urn: self.ancestors(r.urn) & urns for r in registrations}
        ordered: list[Registration] = []
        done: set[str] = set()
        while len(ordered) < len(registrations):
            ready = [r for r in registrations if r.urn not in done and waits[r.urn] <= done]
            if not ready:
                raise AssertionError("the registrations' dependencies form a cycle")
            ordered += ready
            done |= {r.urn for r in ready}
        return ordered

    def depends_on(self, a: Registration, b: Registration) -> bool:
        return b.urn in self.ancestors(a.urn)


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, graph: Graph) -> None:
        super().__init__(mocks)
        self.graph = graph

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.graph.resources.append(Registration(
                urn=response.urn, type=request.type, name=request.name,
                custom=bool(request.custom), parent=request.parent,
                dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns)
                                       for k, v in request.propertyDependencies.items()},
                provider=request.provider,
                raw_inputs=json_format.MessageToDict(request.object),
                additional_secret_outputs=list(request.additionalSecretOutputs)))
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"


class FakeProviders(pulumi.runtime.Mocks):
    """`deployed`: the stack output `deployed` a previous `up` left (None: a new stack);
    `outputs`: all of that `up`'s outputs instead."""

    def __init__(self, deployed: Mapping[str, Any] | None = None,
                 outputs: Mapping[str, Any] | None = None) -> None:
        self.outputs = dict(outputs or ({} if deployed is None else {"deployed": deployed}))
        self.stack_reads: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", {**args.inputs, **fake_state(args.typ, args.name, args.inputs)}

    def call(self, args: pulumi.runtime.MockCallArgs
             ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == READ_STACK_OUTPUTS:  # the engine's answer: the stack's last outputs
            self.stack_reads.append(args.args["name"])
            return {"name": args.args["name"], "outputs": self.outputs,
                    "secretOutputNames": []}, []
        return {}, []


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` block of stacks/Pulumi.<stack>.yaml."""
    document = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = document.get("config") or {}
    return config


def engine_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to the program: objects as JSON, scalars as strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def run_program(config: Mapping[str, Any], stack: str = "test",
                mocks: pulumi.runtime.Mocks | None = None) -> Graph:
    """Evaluate __main__.py with `config` (keys "sandboxed-k8s:<key>") under mocks."""
    graph = Graph()
    mocks = mocks or FakeProviders()
    runtime_config.set_all_config(engine_config(config), [])
    settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False,
                             monitor=RecordingMonitor(mocks, graph), organization=ORGANIZATION)
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    def program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"))

    _sync_await(run_pulumi_func(program))
    root = settings.get_root_resource()
    for key, value in (getattr(root, "outputs", None) or {}).items():
        output = pulumi.Output.from_input(value)
        graph.stack_outputs[key] = (_sync_await(output.future()),
                                    _sync_await(output.is_secret()))
    return graph
