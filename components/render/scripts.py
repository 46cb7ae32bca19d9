"""The text a remote command feeds to a node: parameters, the shared library, one script.

Parameters travel on stdin, never on the command line, so secrets (tokens, keys) stay out of
command strings, process lists and Pulumi's diff of the `create` text.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts"
LIBRARY = "lib.sh"
# Runs what arrives on stdin as root from a private temporary file, so commands inside the
# script cannot swallow the rest of the script by reading stdin.
REMOTE_RUNNER = (
    'f="$(mktemp)" && trap \'rm -f "$f"\' EXIT && cat >"$f" && sudo -n bash "$f" </dev/null'
)
_PARAM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def script_names() -> list[str]:
    return sorted(p.name for p in SCRIPTS_DIR.glob("*.sh") if p.name != LIBRARY)


def read_script(name: str) -> str:
    path = SCRIPTS_DIR / name
    if name == LIBRARY or not path.is_file():
        raise ValueError(f"no node script {name!r}; known: {', '.join(script_names())}")
    return path.read_text()


def b64(text: str) -> str:
    """Files (configs, keys) travel as base64 parameters: one line, no quoting surprises."""
    return base64.b64encode(text.encode()).decode()


def render_invocation(script: str, params: Mapping[str, str]) -> str:
    """stdin for REMOTE_RUNNER: exported parameters, then lib.sh, then the script."""
    bad = [k for k in params if not _PARAM_NAME.match(k)]
    if bad:
        raise ValueError(f"parameter names must be UPPER_SNAKE_CASE: {bad}")
    body = read_script(script)
    lines = ["#!/usr/bin/env bash", "set -euo pipefail"]
    for key in sorted(params):
        lines.append(f"export {key}={shlex.quote(params[key])}")
    library = (SCRIPTS_DIR / LIBRARY).read_text()
    return "\n".join(lines) + "\n" + library + "\n" + body


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
