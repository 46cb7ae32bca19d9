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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Invocation:
    script: str  # the node script's file name
    params: dict[str, str]


def parse_invocation(stdin: str) -> Invocation:
    """The inverse of `render_invocation`: which script, with which parameters."""
    prefix = "#!/usr/bin/env bash\nset -euo pipefail"
    head, found, body = stdin.partition("\n" + (SCRIPTS_DIR / LIBRARY).read_text() + "\n")
    if not found or not head.startswith(prefix):
        raise ValueError("not a node-script invocation (no header or no shared library)")
    words = shlex.split(head[len(prefix):])
    if words[0::2] != ["export"] * (len(words) // 2) or len(words) % 2:
        raise ValueError(f"unexpected header words: {words[:4]}")
    params = dict(w.split("=", 1) for w in words[1::2])
    script = next((n for n in script_names() if read_script(n) == body), None)
    if script is None:
        raise ValueError("the invocation runs none of the node scripts in components/scripts")
    return Invocation(script, params)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
