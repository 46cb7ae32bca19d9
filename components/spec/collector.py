"""Reading raw config values: each problem is recorded under its key path, never raised alone."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from components.spec.model import RESERVED_LABEL_DOMAINS, Artifact
from components.spec.pins import PUBLISHED, pinned

VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
CONTAINERD_SUPPORTED_RE = re.compile(r"^(1\.[67]|2\.\d+)\.\d+$")
GVISOR_RELEASE_RE = re.compile(r"^\d{8}(\.\d+)?$")
PINNED_IMAGE_RE = re.compile(r"^[a-z0-9.\-/]+(:v\d+\.\d+\.\d+\S*|@sha256:[0-9a-f]{64})$")
IMAGE_REPOSITORY_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:\d+)?"
                                 r"(/[a-z0-9]([-a-z0-9._]*[a-z0-9])?)*$")
IMAGE_TAG_RE = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$")
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
LABEL_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|k|M|G)?$")
HEX_RE = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "sha512": re.compile(r"^[0-9a-f]{128}$")}
TTL_RE = re.compile(r"^\d+[smh]$")
URL_RE = re.compile(r"^(https?|file)://\S+$")
ABSOLUTE_PATH_RE = re.compile(r"^/\S*$")
DNS_NAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
                       r"(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
LIBVIRT_URI_RE = re.compile(r"^qemu(\+[a-z]+)?://[^\s]*/(system|session)(\?\S*)?$")


class Collector:
    """Reads a config mapping and records each problem under its key path."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.failed: set[str] = set()  # key paths with a problem

    def error(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")
        self.failed.add(path)

    def ok(self, *paths: str) -> bool:
        """None of `paths` has a problem: a rule that builds on them would only repeat it."""
        return not self.failed.intersection(paths)

    def section(self, raw: Any, path: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """A mapping merged over its defaults; unknown keys are errors (typos must not pass)."""
        if raw is None:
            return dict(defaults)
        if not isinstance(raw, Mapping):
            self.error(path, f"must be an object with keys {sorted(defaults)}")
            return dict(defaults)
        for key in raw:
            if key not in defaults:
                hint = f"did you mean {near[0]}? " if (near := near_miss(str(key), defaults)) \
                    else ""
                self.error(f"{path}.{key}" if path else str(key),
                           f"unknown key; {hint}allowed: {', '.join(sorted(defaults))}")
        return {**defaults, **{k: v for k, v in raw.items() if k in defaults}}

    def string(self, value: Any, path: str, pattern: re.Pattern[str] | None = None,
               allowed: str = "") -> str:
        if not isinstance(value, str) or not value:
            self.error(path, f"must be a non-empty string{'; ' + allowed if allowed else ''}")
            return ""
        if pattern is not None and not pattern.match(value):
            self.error(path, f"{value!r} is malformed; expected {allowed}")
        return value

    def choice(self, value: Any, path: str, choices: Sequence[str]) -> str:
        if value not in choices:
            self.error(path, f"{value!r} is not allowed; choose one of {', '.join(choices)}")
            return choices[0]
        return str(value)

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.error(path, f"{value!r} must be true or false")
            return False
        return value

    def integer(self, value: Any, path: str, minimum: int, maximum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be an integer between {minimum} and {maximum}")
            return minimum
        if not minimum <= value <= maximum:
            self.error(path, f"{value} is out of range; allowed {minimum}..{maximum}")
        return value

    def network(self, value: Any, path: str) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(str(value), strict=True)
        except ValueError:
            self.error(path, f"{value!r} is not an IPv4 network in CIDR form (e.g. 10.17.0.0/24)")
            return ipaddress.IPv4Network("0.0.0.0/32")

    def address(self, value: Any, path: str) -> ipaddress.IPv4Address | None:
        try:
            return ipaddress.IPv4Address(str(value))
        except ValueError:
            self.error(path, f"{value!r} is not an IPv4 address")
            return None

    def checksum(self, value: Any, path: str, algorithm: str) -> str:
        if not isinstance(value, str) or not HEX_RE[algorithm].match(value):
            length = {"sha256": 64, "sha512": 128}[algorithm]
            self.error(path, f"must be the artifact's {algorithm}: {length} lowercase hex "
                             "characters")
            return ""
        return value

    def checksums(self, raw: Mapping[str, Any], section: str, version_key: str,
                  version: str | None, keys: Sequence[str], algorithm: str) -> dict[str, str]:
        """Each of `keys` as the stack gives it, else as pinned for `version` (None: the
        version is itself invalid, reported already). A version with neither is refused once,
        naming the keys to set and where upstream publishes them."""
        pins = pinned(section, version) if version else {}
        found = {key: raw[key] if raw[key] is not None else pins.get(key) for key in keys}
        missing = [key for key, value in found.items() if value is None]
        if missing and version:
            names = [f"{section}.{missing[0]}", *missing[1:]]
            listed = names[0] if len(names) == 1 else \
                f"{', '.join(names[:-1])} and {names[-1]}"
            self.error(f"{section}.{version_key}",
                       f"{version} has no pinned checksums: set {listed} "
                       f"({PUBLISHED[section]})")
        return {key: self.checksum(value, f"{section}.{key}", algorithm)
                for key, value in found.items() if value is not None}

    def artifact(self, raw: Mapping[str, Any], path: str,
                 refuse: Callable[[str], str | None] = lambda version: None) -> Artifact:
        """A `{version, sha256, baseUrl}` section; the checksum pinned for the version unless
        given. `refuse`: why a well-formed version cannot be used, if it cannot."""
        version = self.version(raw["version"], f"{path}.version", VERSION_RE,
                               f"a pinned version matching {VERSION_RE.pattern}")
        if version and (reason := refuse(version)):
            self.error(f"{path}.version", reason)
            version = None  # its checksums are moot
        digest = self.checksums(raw, path, "version", version, ("sha256",), "sha256")
        base_url = self.string(raw["baseUrl"], f"{path}.baseUrl", URL_RE, "an http(s):// URL")
        return Artifact(version or "", f"sha256:{digest.get('sha256', '')}",
                        base_url.rstrip("/"))

    def version(self, value: Any, path: str, pattern: re.Pattern[str],
                allowed: str) -> str | None:
        """A version string, or None when it is invalid (the error recorded)."""
        known = len(self.problems)
        version = self.string(value, path, pattern, allowed)
        return version if len(self.problems) == known else None

    def quantity(self, value: Any, path: str) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `cpu: 4` in YAML is as good as `cpu: "4"`
        if not isinstance(value, str) or not QUANTITY_RE.match(value):
            self.error(path, f"{value!r} is not a Kubernetes quantity (e.g. 250m, 128Mi)")
            return "0"
        return value


def near_miss(key: str, allowed: Iterable[str]) -> list[str]:
    """The allowed key closest to a mistyped one (case aside: podCIDR is podCidr), if any."""
    by_lower = {str(k).lower(): str(k) for k in allowed}
    return [by_lower[k] for k in difflib.get_close_matches(key.lower(), by_lower, n=1)]


def label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return bool(name) and len(name) <= 63 and bool(LABEL_NAME_RE.match(name)) and (
        not prefix or bool(LABEL_PREFIX_RE.match(prefix)))


def is_reserved(key: str) -> bool:
    prefix = key.rpartition("/")[0]
    return any(prefix == d or prefix.endswith("." + d) for d in RESERVED_LABEL_DOMAINS)

