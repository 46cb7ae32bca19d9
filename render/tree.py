"""A stack's whole graph as a tree of files: what each resource ships, the stack's outputs, and
an index of every resource in dependency order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from render.graph import Graph, Registration, run_program, stack_config
from render.mocks import FakeProviders
from render.redact import MARKER, Redactor, masked_differences
from render.shipped import Files, plain, shipped_files, to_yaml

INDEX = "index.yaml"
OUTPUTS = "outputs.yaml"
SEEDS = ("", "other-secrets")  # two sets of stand-in secrets; see render_stack


def resource_key(r: Registration) -> str:
    return f"{r.type} {r.name}"


def _component_path(r: Registration, by_urn: Mapping[str, Registration]) -> str:
    names: list[str] = []
    parent = by_urn.get(r.parent)
    while parent is not None:
        names.append(parent.name)
        parent = by_urn.get(parent.parent)
    return "/".join(reversed(names))


def _add(tree: Files, files: Mapping[str, str], owner: str) -> None:
    for path, text in files.items():
        text = text if text.endswith("\n") or not text else text + "\n"
        if tree.setdefault(path, text) != text:
            raise ValueError(f"{owner} writes {path}, which another resource wrote differently")


def render_tree(graph: Graph, stack: str) -> Files:
    """Relative path -> content, for everything the stack's graph would ship. Secret values
    (private keys, tokens, passwords) appear only as the marker."""
    redact = Redactor(graph.secret_values())
    by_urn = graph.by_urn()
    # Registration order varies with when outputs resolve: ties go by name, not by it.
    resources = sorted((r for r in graph.resources if r.custom), key=lambda r: (r.name, r.type))
    keys = {r.urn: resource_key(r) for r in resources}
    if len(set(keys.values())) != len(keys):
        raise ValueError("two resources share a type and name; the index could not tell them apart")
    tree: Files = {}
    entries: list[dict[str, Any]] = []
    ordered = graph.in_dependency_order(resources)
    position = {r.urn: i for i, r in enumerate(ordered)}
    for r in ordered:
        files = shipped_files(r, redact)
        _add(tree, files, keys[r.urn])
        waits = sorted((u for u in graph.waits_for(r.urn) if u in keys), key=position.__getitem__)
        entries.append({"resource": keys[r.urn], "component": _component_path(r, by_urn),
                        "waits_for": [keys[u] for u in waits], "files": sorted(files)})
    outputs = {k: MARKER if secret else plain(redact.value(v))
               for k, (v, secret) in sorted(graph.stack_outputs.items())}
    _add(tree, {OUTPUTS: to_yaml(outputs)}, "the stack's outputs")
    header = (f"# What stack {stack} ships, rendered by `python -m render {stack}` from the "
              f"program under mocks.\n# Resources in dependency order: each after everything it "
              f"waits for. Keys, certificates and ids are\n# stand-ins; secrets read {MARKER}.\n")
    _add(tree, {INDEX: header + to_yaml({"stack": stack, "resources": entries})}, "the index")
    return dict(sorted(tree.items()))


def render_stack(stack: str, seeds: tuple[str, str] = SEEDS) -> Files:
    """The tree of stack `stack`, evaluated twice with different stand-in secrets: besides
    the secrets themselves (replaced wherever they appear), whatever differs between the two
    renders is derived from them and is masked too."""
    config = stack_config(stack)
    first, second = (
        render_tree(run_program(config, stack, FakeProviders(seed=seed), host_check=False), stack)
        for seed in seeds)
    if first.keys() != second.keys():
        raise ValueError(f"the files written depend on secret values: "
                         f"{sorted(first.keys() ^ second.keys())}")
    return {path: masked_differences(text, second[path]) for path, text in first.items()}
