"""Mirrors: where an air-gapped site's nodes fetch from instead of the internet.

A files mirror serves every download under `<files>/<upstream host>/<upstream path>`, so it
replaces the upstream URLs by rewriting them (defaults, and the same URLs written out in a
stack); any other URL the stack sets is its own source and is kept.
A registry mirror serves every image as `<registry>/<upstream host>/<path>`; containerd is
told so per upstream registry (hosts.toml), so manifests keep the images' upstream names.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from components.spec.collector import Collector
from components.spec.defaults import DEFAULTS
from components.spec.model import MirrorSpec

# Every default download URL a files mirror stands in for: (section, key).
FILE_URL_DEFAULTS = (("kubernetes", "baseUrl"), ("containerd", "baseUrl"), ("runc", "baseUrl"),
                     ("cniPlugins", "baseUrl"), ("crictl", "baseUrl"), ("gvisor", "baseUrl"),
                     ("kata", "baseUrl"), ("libvirt", "baseImage"))
# Registries the program's images come from by default.
UPSTREAM_REGISTRIES = ("registry.k8s.io", "docker.io", "ghcr.io")

_MIRROR_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
_REGISTRY_HOST = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:\d+)?$")


def mirrored_url(files: str, upstream: str) -> str:
    """`https://dl.k8s.io/release` under files mirror M is `M/dl.k8s.io/release`."""
    return f"{files}/{upstream.split('://', 1)[1]}"


def effective_defaults(mirrors: MirrorSpec) -> dict[str, Any]:
    """DEFAULTS with every default download URL pointed at the files mirror, if any."""
    defaults = copy.deepcopy(DEFAULTS)
    if mirrors.files:
        for section, key in FILE_URL_DEFAULTS:
            defaults[section][key] = mirrored_url(mirrors.files, DEFAULTS[section][key])
    return defaults


def with_files_mirror(top: Mapping[str, Any], mirrors: MirrorSpec) -> dict[str, Any]:
    """The raw config with every upstream download URL it spells out sent to the mirror."""
    out = copy.deepcopy(dict(top))
    files = mirrors.files
    if not files:
        return out

    def rewrite(holder: Any, key: str, upstream: str) -> None:
        if isinstance(holder, dict) and isinstance(holder.get(key), str) and \
                holder[key].rstrip("/") == upstream.rstrip("/"):
            holder[key] = mirrored_url(files, upstream)

    for section, key in FILE_URL_DEFAULTS:
        rewrite(out.get(section), key, DEFAULTS[section][key])
    pools = out.get("pools")
    for pool in pools if isinstance(pools, list) else ():
        rewrite(pool, "baseImage", DEFAULTS["libvirt"]["baseImage"])
    return out


def _url(c: Collector, value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _MIRROR_URL.match(value):
        c.error(path, f"{value!r} is not an http(s):// URL without query or fragment")
        return None
    return value.rstrip("/")


def read_mirrors(c: Collector, raw: Any) -> MirrorSpec:
    m = c.section(raw, "mirrors", DEFAULTS["mirrors"])
    registries: dict[str, str] = {}
    if not isinstance(m["registries"], Mapping):
        c.error("mirrors.registries", "must map an upstream registry (e.g. docker.io) to its "
                                      "mirror's URL")
    else:
        for upstream, url in m["registries"].items():
            path = f"mirrors.registries.{upstream}"
            if not _REGISTRY_HOST.match(str(upstream)):
                c.error(path, "is not a registry host name such as docker.io or "
                              "registry.example:5000")
            elif (host := _url(c, url, path)) is not None:
                registries[str(upstream)] = host
    return MirrorSpec(
        files=_url(c, m["files"], "mirrors.files"),
        registry=_url(c, m["registry"], "mirrors.registry"),
        registries=registries,
        apt=_url(c, m["apt"], "mirrors.apt"),
        apt_security=_url(c, m["aptSecurity"], "mirrors.aptSecurity"),
        offline=c.boolean(m["offline"], "mirrors.offline"),
    )
