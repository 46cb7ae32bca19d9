"""Runs the real program (__main__.py) under Pulumi mocks and records the resulting graph:
every registration with its type, name, parent, dependencies, provider, raw (secret-marked)
inputs and the outputs the mocks gave it. No Pulumi CLI, plugin or cloud is involved.

Both `python -m render` and the test layers evaluate the program through `run_program`."""

from __future__ import annotations

import json
import runpy
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
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

from components import host
from components.render.cloudinit import parse_seed_files
from render.mocks import SECRET_OUTPUTS, FakeProviders

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "sandboxed-k8s"
ORGANIZATION = "organization"  # what a self-managed (file) backend calls every organization
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"


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
    raw_outputs: dict[str, Any] = field(default_factory=dict)  # what the mocks computed

    @property
    def inputs(self) -> dict[str, Any]:
        inputs: dict[str, Any] = unwrap(self.raw_inputs)
        return inputs

    @property
    def outputs(self) -> dict[str, Any]:
        outputs: dict[str, Any] = unwrap(self.raw_outputs)
        return outputs


LOCAL_COMMAND = "command:local:Command"
SEED_IMAGE_SUFFIX = "-seed-image"  # the local step that builds a node's cloud-init seed


@dataclass
class Graph:
    resources: list[Registration] = field(default_factory=list)
    stack_outputs: dict[str, tuple[Any, bool]] = field(default_factory=dict)  # value, secret

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.resources if r.type == typ]

    def seed_images(self) -> dict[str, Registration]:
        """Node -> the local step that builds its cloud-init seed image."""
        return {r.name.removesuffix(SEED_IMAGE_SUFFIX): r for r in self.of_type(LOCAL_COMMAND)
                if r.name.endswith(SEED_IMAGE_SUFFIX)}

    def seed_files(self, node: str) -> dict[str, str]:
        """A node's cloud-init documents as shipped: user-data, meta-data, network-config."""
        return parse_seed_files(self.named(f"{node}{SEED_IMAGE_SUFFIX}").inputs["stdin"])

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

    def secret_values(self) -> list[str]:
        """Every value the providers computed and keep secret (private keys, passwords)."""
        return [value for r in self.resources for key in SECRET_OUTPUTS.get(r.type, ())
                if isinstance(value := r.outputs.get(key), str) and value]


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
                additional_secret_outputs=list(request.additionalSecretOutputs),
                raw_outputs=json_format.MessageToDict(response.object)))
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def stack_names() -> list[str]:
    """The stacks of stacks/Pulumi.<stack>.yaml."""
    return sorted(p.name[len("Pulumi."):-len(".yaml")]
                  for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` block of stacks/Pulumi.<stack>.yaml."""
    document = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = document.get("config") or {}
    return config


def engine_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to the program: objects as JSON, scalars as strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


@contextmanager
def _host_check_skipped() -> Iterator[None]:
    """`__main__.py` without its check of this machine's tools: under mocks nothing is built
    here, so what `pulumi up` needs on this machine (mkisofs) is not needed."""
    saved = host.check_host
    host.check_host = lambda which=None: None
    try:
        yield
    finally:
        host.check_host = saved


def run_program(config: Mapping[str, Any], stack: str = "test",
                mocks: pulumi.runtime.Mocks | None = None, *,
                host_check: bool = True) -> Graph:
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

    with nullcontext() if host_check else _host_check_skipped():
        _sync_await(run_pulumi_func(program))
    root = settings.get_root_resource()
    for key, value in (getattr(root, "outputs", None) or {}).items():
        output = pulumi.Output.from_input(value)
        graph.stack_outputs[key] = (_sync_await(output.future()),
                                    _sync_await(output.is_secret()))
    return graph
