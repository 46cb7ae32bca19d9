"""The one place that reads `pulumi.Config`: every key of the project, parsed, then validated,
together with what the previous `up` of this stack deployed."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config
from pulumi.runtime import invoke

from components.spec import PROJECT, ClusterSpec, ConfigError, load
from components.spec.artifacts import partial_mirror_warning
from components.spec.collector import Collector
from components.spec.pools import idle_sandbox_warnings
from components.spec.transitions import (
    DEPLOYED_OUTPUT,
    UNRECORDED_NODES,
    read_deployed,
    transition_warnings,
)

# The engine's built-in function behind StackReference: a stack's outputs from its last update.
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"


def project_config_keys() -> list[str]:
    """Every key set for this project, known or not, so typos are reported, not ignored."""
    names = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    prefix = f"{PROJECT}:"
    return sorted(k[len(prefix):] for k in names if k.startswith(prefix))


def _parse(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value  # a plain string such as adminUser


def previous_deployment() -> Any:
    """This stack's own output `deployed` as its last update left it (None before the first;
    the names of its nodes for a stack deployed before the program kept that record; the
    addresses of its nodes from the output `nodes` for a record from before it held them).

    Read synchronously, before anything is declared, so a change the record forbids is refused
    with the config errors. The self-managed (file) backend and Pulumi Cloud both name a stack
    `<organization>/<project>/<stack>` (a file backend's organization is `organization`); a
    file backend from before project-scoped stacks knows the bare stack name only."""
    stack = pulumi.get_stack()
    errors = []
    for name in (f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack}", stack):
        try:
            result = invoke(READ_STACK_OUTPUTS, {"name": name})
        except Exception as error:  # any failure: nothing to check changes against
            errors.append(f"{name}: {error}")
            continue
        outputs = (result.value or {}).get("outputs") or {}
        nodes = outputs.get("nodes")
        if DEPLOYED_OUTPUT not in outputs and isinstance(nodes, dict) and nodes:
            return {UNRECORDED_NODES: sorted(nodes)}  # deployed before the record existed
        record = outputs.get(DEPLOYED_OUTPUT)
        if isinstance(record, dict) and "addresses" not in record and isinstance(nodes, dict):
            # A record from before it held the addresses: the output `nodes` has them.
            record = {**record, "addresses": nodes}
        return record
    raise ConfigError([f"(stack output {DEPLOYED_OUTPUT}): cannot read what the last `pulumi up` "
                       f"of this stack deployed ({'; '.join(errors)}); it is needed to refuse "
                       "changes a running cluster cannot take"])


class StackConfigError(pulumi.RunError, ConfigError):
    """Every configuration problem, as Pulumi's RunError: `pulumi up` and `preview` print the
    problems alone, without a Python traceback."""


def read_stack_spec() -> ClusterSpec:
    """The validated spec; StackConfigError with every problem of the stack's config."""
    config = pulumi.Config(PROJECT)
    raw = {key: _parse(config.get(key)) for key in project_config_keys()}
    try:
        deployed = previous_deployment()
        spec = load(raw, pulumi.get_stack(), deployed)
    except ConfigError as error:
        raise StackConfigError(error.problems) from None
    warnings = transition_warnings(spec, read_deployed(Collector(), deployed))
    warnings += idle_sandbox_warnings(spec)
    if warning := partial_mirror_warning(spec):
        warnings.append(warning)
    for warning in warnings:
        pulumi.log.warn(warning)
    return spec
