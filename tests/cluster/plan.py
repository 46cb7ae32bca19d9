"""The program's remote steps for a whole cluster, as pulumi-command would run them.

Evaluated with real keys and certificates (tests/graph/realtls.py), every step's `create`
command and `stdin` are exactly what the engine would send over SSH to its node; `run_plan`
order keeps every step after everything it waits for, so one runner executes them serially.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from tests.graph.harness import Graph, run_program
from tests.graph.realtls import RealTlsProviders

REMOTE_COMMAND = "command:remote:Command"


@dataclass(frozen=True)
class RemoteStep:
    name: str  # e.g. master-kubeadm-init
    host: str
    create: str
    stdin: str


@dataclass(frozen=True)
class ClusterPlan:
    graph: Graph
    steps: tuple[RemoteStep, ...]  # in an order that respects the program's dependencies
    waits: Mapping[str, frozenset[str]]  # step -> the steps it transitively waits for
    # Node removal steps (`<first>-remove-<node>`), which run only when a node leaves: their
    # `delete` command in `create`, as the engine would run it.
    removals: Mapping[str, RemoteStep]

    @property
    def kubeconfig(self) -> str:
        return str(self.graph.stack_outputs["kubeconfig"][0])

    @property
    def admin_private_key(self) -> str:
        return str(self.graph.stack_outputs["adminSshPrivateKey"][0])

    def cloud_init(self, node: str) -> dict[str, str]:
        """user-data, meta-data and network-config of the node's seed."""
        return self.graph.seed_files(node)


class KeptTlsProviders(RealTlsProviders):
    """Real keys and certificates, each made once per resource and kept, as the engine keeps a
    resource's state across updates: a later evaluation (a changed config) ships the PKI and
    identities the running cluster already has. `deployed`: the previous evaluation's record,
    which the program reads back as the stack output `deployed`."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        key = (args.typ, args.name)
        if key in self.kept:
            return self.kept[key]
        made = super().new_resource(args)
        if args.typ.startswith("tls:"):
            self.kept[key] = made
        return made


def cluster_plan(config: Mapping[str, Any], stack: str,
                 providers: KeptTlsProviders | None = None) -> ClusterPlan:
    """The plan of `config`; with the `providers` of an earlier plan, what the next `up` of
    the same stack would run: the same keys and certificates, the earlier `deployed` record."""
    providers = providers or KeptTlsProviders()
    graph = run_program(config, stack, mocks=providers)
    providers.outputs = {"deployed": graph.stack_outputs["deployed"][0]}
    removals = {r.name: RemoteStep(r.name, r.inputs["connection"]["host"],
                                   str(r.inputs["delete"]), str(r.inputs["stdin"]))
                for r in graph.of_type(REMOTE_COMMAND)
                if "create" not in r.inputs and "delete" in r.inputs}
    commands = sorted((r for r in graph.of_type(REMOTE_COMMAND) if "create" in r.inputs),
                      key=lambda r: r.name)
    names = {r.urn: r.name for r in commands}
    waits = {r.name: frozenset(names[u] for u in graph.ancestors(r.urn) if u in names)
             for r in commands}
    steps = tuple(RemoteStep(r.name, r.inputs["connection"]["host"], str(r.inputs["create"]),
                             str(r.inputs["stdin"]))
                  for r in graph.in_dependency_order(commands))
    return ClusterPlan(graph, steps, waits, removals)


def changed_steps(before: ClusterPlan, after: ClusterPlan) -> tuple[RemoteStep, ...]:
    """The remote steps of `after` that `pulumi up` from `before` would run, in order: those
    whose command or stdin differ (and new ones)."""
    earlier = {s.name: s for s in before.steps}
    return tuple(s for s in after.steps if earlier.get(s.name) != s)
