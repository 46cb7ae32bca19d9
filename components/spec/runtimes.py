"""Container runtimes: containerd, runc, CNI, and the sandboxes (gVisor, Kata)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.spec.collector import (
    CONTAINERD_SUPPORTED_RE,
    GVISOR_RELEASE_RE,
    IMAGE_TAG_RE,
    PINNED_IMAGE_RE,
    URL_RE,
    Collector,
    near_miss,
)
from components.spec.model import (
    RUNSC_FLAG_ALLOWLIST,
    RUNSC_PLATFORMS,
    Artifact,
    CniSpec,
    GvisorSpec,
    KataSpec,
    PoolSpec,
)


@dataclass(frozen=True)
class NodeRuntimes:
    containerd: Artifact
    runc: Artifact
    cni_plugins: Artifact
    crictl: Artifact
    cni: CniSpec


def read_node_runtimes(c: Collector, top: Mapping[str, Any],
                       defaults: Mapping[str, Any]) -> NodeRuntimes:
    containerd = c.artifact(
        c.section(top["containerd"], "containerd", defaults["containerd"]), "containerd",
        lambda v: None if CONTAINERD_SUPPORTED_RE.match(v) else
        f"{v} is not supported; use 1.6.x, 1.7.x or 2.x")
    cni_raw = c.section(top["cni"], "cni", defaults["cni"])
    return NodeRuntimes(
        containerd=containerd,
        runc=c.artifact(c.section(top["runc"], "runc", defaults["runc"]), "runc"),
        cni_plugins=c.artifact(c.section(top["cniPlugins"], "cniPlugins",
                                         defaults["cniPlugins"]), "cniPlugins"),
        crictl=c.artifact(c.section(top["crictl"], "crictl", defaults["crictl"]), "crictl"),
        cni=CniSpec(
            c.string(cni_raw["flannelVersion"], "cni.flannelVersion", IMAGE_TAG_RE,
                     "a tag like v0.27.4"),
            c.string(cni_raw["flannelCniPluginVersion"], "cni.flannelCniPluginVersion",
                     IMAGE_TAG_RE, "a tag like v1.8.0-flannel1"),
            c.string(cni_raw["imageRegistry"], "cni.imageRegistry").rstrip("/"),
            c.string(cni_raw["networkPolicyImage"], "cni.networkPolicyImage", PINNED_IMAGE_RE,
                     "an image pinned by tag or digest, e.g. registry/name:v1.2.3"),
        ),
    )


def _runsc_flags(c: Collector, raw: Any) -> dict[str, str]:
    flags: dict[str, str] = {}
    if not isinstance(raw, Mapping):
        c.error("gvisor.flags", f"must be a map; allowed keys: {', '.join(RUNSC_FLAG_ALLOWLIST)}")
        return flags
    for k, v in raw.items():
        if k not in RUNSC_FLAG_ALLOWLIST:
            near = near_miss(str(k), RUNSC_FLAG_ALLOWLIST)
            c.error(f"gvisor.flags.{k}", "is not an allowed runsc flag; "
                                         f"{f'did you mean {near[0]}? ' if near else ''}"
                                         f"allowed: {', '.join(RUNSC_FLAG_ALLOWLIST)}")
        elif not isinstance(v, str | bool | int):
            c.error(f"gvisor.flags.{k}", "must be a string, number or boolean")
        else:
            flags[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return flags


def read_gvisor(c: Collector, raw: Any, defaults: Mapping[str, Any]) -> GvisorSpec:
    g = c.section(raw, "gvisor", defaults["gvisor"])
    overhead = c.section(g["overhead"], "gvisor.overhead", defaults["gvisor"]["overhead"])
    layout = c.choice(g["layout"], "gvisor.layout", ("binaries", "archive"))
    release = gvisor_release(c, g["release"])
    checksums: dict[str, str] = {}
    if layout == "binaries":
        given = c.checksums(g, "gvisor", "release", release, ("runscSha512", "shimSha512"),
                            "sha512")
        checksums = {file: given[key] for file, key in (("runsc", "runscSha512"),
                                                        ("containerd-shim-runsc-v1",
                                                         "shimSha512")) if key in given}
    elif g["runscSha512"] or g["shimSha512"]:
        c.error("gvisor.runscSha512", "applies to layout binaries only; the archive layout is "
                                      "verified against its published .sha512")
    return GvisorSpec(
        release=release or "",
        base_url=c.string(g["baseUrl"], "gvisor.baseUrl", URL_RE,
                          "an http(s):// URL").rstrip("/"),
        layout=layout,
        checksums=checksums,
        platform=c.choice(g["platform"], "gvisor.platform", RUNSC_PLATFORMS),
        flags=_runsc_flags(c, g["flags"]),
        overhead_cpu=c.quantity(overhead["cpu"], "gvisor.overhead.cpu"),
        overhead_memory=c.quantity(overhead["memory"], "gvisor.overhead.memory"),
    )


def gvisor_release(c: Collector, value: Any) -> str | None:
    """The dated release as a string, None if invalid. `pulumi config set --path` stores
    20251118 as a number, which names the release as well; YAML reads an unquoted
    20251118.0 as a float, whose text is no longer the release's name (20251118.10 would come
    back as 20251118.1), so a float is refused."""
    path = "gvisor.release"
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif isinstance(value, float):
        c.error(path, f"{value!r} was read as a number; quote it (release: \"{value}\") so "
                      "it names the release exactly")
        return None
    return c.version(value, path, GVISOR_RELEASE_RE,
                     "a dated release like 20251110 or 20251110.0 (never 'latest')")


def read_kata(c: Collector, raw: Any, pools: Sequence[PoolSpec],
              defaults: Mapping[str, Any]) -> KataSpec:
    """Kata's artifact is validated only when a pool runs it (its defaults may lag)."""
    k = c.section(raw, "kata", defaults["kata"])
    overhead = c.section(k["overhead"], "kata.overhead", defaults["kata"]["overhead"])
    artifact = (c.artifact(k, "kata") if any("kata" in p.runtimes for p in pools)
                else Artifact(str(k["version"]), "", str(k["baseUrl"])))
    return KataSpec(artifact, c.quantity(overhead["cpu"], "kata.overhead.cpu"),
                    c.quantity(overhead["memory"], "kata.overhead.memory"))


def check_sandbox_hosts(c: Collector, pools: Sequence[PoolSpec], gvisor: GvisorSpec,
                        containerd: Artifact) -> None:
    """Each sandbox's needs of its node: KVM for Kata and runsc's kvm platform, and a
    containerd that can drive gVisor's shim."""
    for p in pools:
        needs = ("kata" in p.runtimes or ("gvisor" in p.runtimes and gvisor.platform == "kvm"))
        if needs and p.domain_type != "kvm":
            c.error(f"pools[{p.name}].domainType", "Kata (and gVisor's kvm platform) need KVM "
                                                   "inside the node: use domainType kvm on a "
                                                   "host with nested virtualisation")
        elif needs and p.cpu_mode != "host-passthrough":
            c.error(f"pools[{p.name}].cpuMode", "Kata (and gVisor's kvm platform) need the "
                                                "host's virtualisation extensions: use "
                                                "host-passthrough")
    if containerd.version.startswith("1.6.") and any("gvisor" in p.runtimes for p in pools):
        c.error("containerd.version", "gVisor's containerd shim needs containerd 1.7 or newer "
                                      "(1.6 cannot read its task API replies)")
