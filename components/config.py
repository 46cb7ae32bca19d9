"""The one place that reads `pulumi.Config`: every key of the project, parsed, then validated."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components.spec import PROJECT, ClusterSpec, load
from components.spec.artifacts import partial_mirror_warning


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


def read_stack_spec() -> ClusterSpec:
    config = pulumi.Config(PROJECT)
    raw = {key: _parse(config.get(key)) for key in project_config_keys()}
    spec = load(raw, pulumi.get_stack())
    warning = partial_mirror_warning(spec)
    if warning:
        pulumi.log.warn(warning)
    return spec
