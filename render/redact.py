"""Secret values replaced by a marker wherever they appear, in the forms the program ships
them: as they are, trimmed, base64-encoded (kubeconfig key data, encryption keys) and line by
line (a PEM body indented inside a YAML document)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

MARKER = "<secret>"
_MIN_LINE = 16  # shorter lines of a multi-line secret (PEM armour, blank) are not secret


def secret_forms(secret: str) -> set[str]:
    """Every form of `secret` that must not appear in the output."""
    forms = {secret, secret.strip()}
    forms |= {base64.b64encode(f.encode()).decode() for f in set(forms)}
    lines = {line.strip() for line in secret.splitlines()}
    forms |= {line for line in lines if len(line) >= _MIN_LINE and not line.startswith("-----")}
    forms.discard("")
    return forms


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {f for s in secrets for f in secret_forms(s)}
        # Longest first, so a whole key is replaced before any of its lines.
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, text: str) -> str:
        return self._pattern.sub(MARKER, text) if self._pattern else text

    def value(self, value: Any) -> Any:
        """Strings anywhere in a structure of dicts and lists, redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


# A value derived from a secret (a hash, an encoding we do not know) is caught by rendering
# twice with different secrets: what differs depends on them.
_TOKEN = re.compile(r"[A-Za-z0-9+/=_.-]")


def _masked_line(line: str, other: str) -> str:
    if line == other:
        return line
    start = 0
    while start < min(len(line), len(other)) and line[start] == other[start]:
        start += 1
    end = 0
    while (end < min(len(line), len(other)) - start
           and line[len(line) - 1 - end] == other[len(other) - 1 - end]):
        end += 1
    stop = len(line) - end
    while start > 0 and _TOKEN.match(line[start - 1]):
        start -= 1
    while stop < len(line) and _TOKEN.match(line[stop]):
        stop += 1
    return line[:start] + MARKER + line[stop:]


def masked_differences(text: str, other: str) -> str:
    """`text` with every line that differs from `other`'s masked where it differs; the
    whole text masked when the two do not even have the same lines."""
    if text == other:
        return text
    lines, others = text.split("\n"), other.split("\n")
    if len(lines) != len(others):
        return MARKER + "\n"
    return "\n".join(_masked_line(a, b) for a, b in zip(lines, others, strict=True))
