"""A stack's file read without the Pulumi CLI: `stacks/Pulumi.<name>.yaml` (or any path),
validated exactly as `pulumi up` validates the stack's config."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.spec.loader import load
from components.spec.model import PROJECT, ClusterSpec, ConfigError

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"


def stack_file(stack: str) -> Path:
    """A stack name (its file under stacks/) or the path of a stack file."""
    path = Path(stack)
    return path if path.suffix in (".yaml", ".yml") else STACKS_DIR / f"Pulumi.{stack}.yaml"


def stack_name(path: Path) -> str:
    """`Pulumi.dev.yaml` -> `dev`, as Pulumi names the stack of a stack file."""
    name = path.name
    for suffix in (".yaml", ".yml"):
        name = name.removesuffix(suffix)
    return name.removeprefix("Pulumi.")


def project_config(document: Mapping[str, Any]) -> dict[str, Any]:
    """The project's keys of a stack file, without the `sandboxed-k8s:` prefix."""
    config = document.get("config") or {}
    prefix = f"{PROJECT}:"
    return {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}


def load_stack_file(path: Path) -> ClusterSpec:
    """Raises OSError for an unreadable file, ConfigError for an invalid configuration."""
    document = yaml.safe_load(path.read_text()) or {}
    return load(project_config(document), stack_name(path))


def load_stack_argument(stack: str) -> ClusterSpec | None:
    """The spec of a command's STACK argument, or None after printing on stderr why it cannot
    be read (every configuration problem): such commands then exit 2."""
    path = stack_file(stack)
    try:
        return load_stack_file(path)
    except OSError as err:
        print(f"cannot read stack file {path}: {err.strerror}", file=sys.stderr)
    except ConfigError as err:
        print(f"{path}: {err}", file=sys.stderr)
    return None
