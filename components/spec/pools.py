"""Pools: machine shape, runtimes, labels, taints and how each pool's VMs boot."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.spec.collector import (
    ABSOLUTE_PATH_RE,
    DNS_LABEL_RE,
    LABEL_NAME_RE,
    LIBVIRT_URI_RE,
    Collector,
    is_reserved,
    label_key_ok,
)
from components.spec.defaults import BOOT_DEFAULTS, POOL_DEFAULTS, TAINT_KEYS
from components.spec.model import (
    CPU_MODES,
    DEFAULT_CPU_MODE,
    DOMAIN_TYPES,
    KUBEADM_MIN_CPUS_CONTROL_PLANE,
    KUBEADM_MIN_MEMORY_MIB,
    ROLES,
    SANDBOX_HANDLERS,
    TAINT_EFFECTS,
    ClusterSpec,
    DirectBoot,
    PoolSpec,
    Taint,
)


def node_mac(stack: str, node_name: str) -> str:
    """A stable locally administered MAC (QEMU's 52:54:00 prefix) per stack and node."""
    digest = hashlib.sha256(f"{stack}/{node_name}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def read_pools(c: Collector, raw: Any, libvirt: Mapping[str, Any],
           machine: MachineDefaults) -> list[PoolSpec]:
    if not isinstance(raw, list) or not raw:
        c.error("pools", "must be a non-empty list of pool objects")
        return []
    pools: list[PoolSpec] = []
    for i, raw_pool in enumerate(raw):
        path = f"pools[{i}]"
        p = c.section(raw_pool, path, {"name": None, **POOL_DEFAULTS})
        name = c.string(p["name"], f"{path}.name", DNS_LABEL_RE,
                        "a DNS label: lowercase letters, digits and '-'")
        path = f"pools[{name or i}]"
        role = c.choice(p["role"], f"{path}.role", ROLES)
        count = c.integer(p["count"], f"{path}.count", 1 if role == "control-plane" else 0, 50)
        cpu = c.integer(p["cpu"], f"{path}.cpu", 1, 64)
        if role == "control-plane" and c.ok(f"{path}.role", f"{path}.cpu") and cpu < 2:
            c.error(f"{path}.cpu", f"kubeadm needs at least {KUBEADM_MIN_CPUS_CONTROL_PLANE} "
                                   "vCPUs on a control-plane node")
        memory = c.integer(p["memoryMiB"], f"{path}.memoryMiB", 1, 1024 * 1024)
        if c.ok(f"{path}.memoryMiB") and memory < KUBEADM_MIN_MEMORY_MIB:
            c.error(f"{path}.memoryMiB", f"{memory} MiB is under kubeadm's minimum of "
                                         f"{KUBEADM_MIN_MEMORY_MIB} MiB")
        disk = c.integer(p["diskGiB"], f"{path}.diskGiB", 10, 4096)
        runtimes: list[str] = []
        if not isinstance(p["runtimes"], list):
            c.error(f"{path}.runtimes", f"must be a list of: {', '.join(SANDBOX_HANDLERS)}")
        else:
            for j, r in enumerate(p["runtimes"]):
                if r == "runc":
                    c.error(f"{path}.runtimes[{j}]", "runc is always installed; list only "
                                                     f"sandboxes: {', '.join(SANDBOX_HANDLERS)}")
                elif r not in SANDBOX_HANDLERS:
                    c.error(f"{path}.runtimes[{j}]", f"unknown runtime {r!r}; allowed: "
                                                     f"{', '.join(SANDBOX_HANDLERS)}")
                elif r in runtimes:
                    c.error(f"{path}.runtimes[{j}]", f"{r!r} is listed twice")
                else:
                    runtimes.append(r)
        if runtimes and role == "control-plane" and c.ok(f"{path}.role"):
            c.error(f"{path}.runtimes", "sandbox runtimes run on worker pools only; tenants "
                                        "must stay off the control plane")
        labels: dict[str, str] = {}
        if not isinstance(p["labels"], Mapping):
            c.error(f"{path}.labels", "must be a map of label key to string value")
        else:
            for k, v in p["labels"].items():
                if not label_key_ok(str(k)):
                    c.error(f"{path}.labels.{k}", "is not a valid Kubernetes label key")
                elif is_reserved(str(k)):
                    c.error(f"{path}.labels.{k}", "uses the reserved sandboxed-k8s.io domain; "
                                                  "sandbox labels are set from `runtimes`")
                elif not isinstance(v, str) or not LABEL_NAME_RE.match(v) or len(v) > 63:
                    c.error(f"{path}.labels.{k}", f"value {v!r} is not a valid label value")
                else:
                    labels[str(k)] = v
        taints: list[Taint] = []
        if not isinstance(p["taints"], list):
            c.error(f"{path}.taints", "must be a list of {key, value, effect}")
        else:
            for j, raw_taint in enumerate(p["taints"]):
                tpath = f"{path}.taints[{j}]"
                t = c.section(raw_taint, tpath, dict.fromkeys(TAINT_KEYS, ""))
                key = str(t["key"])
                if not label_key_ok(key) or not key:
                    c.error(f"{tpath}.key", f"{key!r} is not a valid taint key")
                elif is_reserved(key):
                    c.error(f"{tpath}.key", "uses the reserved sandboxed-k8s.io domain; the "
                                            "sandbox taint is set from `runtimes`")
                effect = c.choice(t["effect"], f"{tpath}.effect", TAINT_EFFECTS)
                taints.append(Taint(key, str(t["value"]), effect))
        uri = p["libvirtUri"] if p["libvirtUri"] is not None else libvirt["uri"]
        uri = c.string(uri, f"{path}.libvirtUri", LIBVIRT_URI_RE,
                       "a libvirt URI such as qemu:///system or qemu+ssh://user@host/system")
        # The checksum comes from where the image does: a pool's own image never inherits the
        # checksum pinned for libvirt.baseImage.
        image_from = p if p["baseImage"] is not None else libvirt
        image_path = f"{path}.baseImage" if image_from is p else "libvirt.baseImage"
        base_image = c.string(image_from["baseImage"], image_path, None, "an image URL or path")
        checksum = read_image_checksum(c, image_from["baseImageChecksum"],
                                       f"{image_path}Checksum")
        domain_type, cpu_mode, boot = read_machine(c, p, machine, path)
        names: tuple[str, ...]
        if p["names"] is None:
            names = tuple(f"{name}-{n + 1}" for n in range(count if isinstance(count, int) else 0))
        elif not isinstance(p["names"], list) or (c.ok(f"{path}.count")
                                                  and len(p["names"]) != count):
            c.error(f"{path}.names", f"must list exactly `count` ({count}) node names")
            names = ()
        else:
            names = tuple(c.string(n, f"{path}.names[{j}]", DNS_LABEL_RE, "a DNS label")
                          for j, n in enumerate(p["names"]))
        pools.append(PoolSpec(name, role, count, cpu, memory, disk, tuple(runtimes), labels,
                              tuple(taints), uri, names, base_image, domain_type, cpu_mode,
                              boot, checksum))
    return pools


def read_image_checksum(c: Collector, value: Any, path: str) -> str | None:
    """`sha256:<hex>` or `sha512:<hex>` (Debian publishes SHA512SUMS for its cloud images)."""
    if value is None:
        return None
    algorithm, _, digest = str(value).partition(":")
    if algorithm not in ("sha256", "sha512"):
        c.error(path, f"{value!r} must be sha256:<hex> or sha512:<hex>")
        return None
    return f"{algorithm}:{c.checksum(digest, path, algorithm)}"


@dataclass(frozen=True)
class MachineDefaults:
    """libvirt's pool-wide defaults, validated once."""

    domain_type: str
    cpu_mode: str | None
    boot: DirectBoot | None


def read_machine(c: Collector, p: Mapping[str, Any], defaults: MachineDefaults,
             path: str) -> tuple[str, str, DirectBoot | None]:
    """The pool's domain type, CPU mode and direct boot: its own keys, else libvirt's."""
    domain_type = (c.choice(p["domainType"], f"{path}.domainType", DOMAIN_TYPES)
                   if p["domainType"] is not None else defaults.domain_type)
    if p["cpuMode"] is not None:
        cpu_mode, mode_path = c.choice(p["cpuMode"], f"{path}.cpuMode", CPU_MODES), \
            f"{path}.cpuMode"
    elif defaults.cpu_mode is not None:
        cpu_mode, mode_path = defaults.cpu_mode, "libvirt.cpuMode"
    else:
        cpu_mode, mode_path = DEFAULT_CPU_MODE[domain_type], ""
    if domain_type == "qemu" and cpu_mode in ("host-passthrough", "host-model"):
        c.error(mode_path, f"{cpu_mode} needs KVM; pool {p['name']!r} has domainType qemu: "
                           "use maximum")
    boot = read_boot(c, p["boot"], f"{path}.boot") if p["boot"] is not None else defaults.boot
    return domain_type, cpu_mode, boot


def read_boot(c: Collector, raw: Any, path: str) -> DirectBoot | None:
    if raw is None:
        return None
    b = c.section(raw, path, BOOT_DEFAULTS)
    kernel = c.string(b["kernel"], f"{path}.kernel", ABSOLUTE_PATH_RE,
                      "an absolute path on the hypervisor host")
    initrd = None
    if b["initrd"] is not None:
        initrd = c.string(b["initrd"], f"{path}.initrd", ABSOLUTE_PATH_RE,
                          "an absolute path on the hypervisor host")
    cmdline = b["cmdline"]
    if not isinstance(cmdline, str):
        c.error(f"{path}.cmdline", "must be a string of kernel arguments, e.g. "
                                   "'root=/dev/vda rw console=ttyS0'")
        cmdline = ""
    return DirectBoot(kernel, initrd, " ".join(cmdline.split()))



def idle_sandbox_warnings(spec: ClusterSpec) -> list[str]:
    """Sandboxes whose every pool has count 0: nothing of theirs is declared on the cluster."""
    warnings = []
    for runtime in SANDBOX_HANDLERS:
        idle = [p.name for p in spec.pools if runtime in p.runtimes]
        if idle and runtime not in spec.enabled_sandboxes:
            warnings.append(
                f"{runtime}: every pool that runs it has count 0 "
                f"({', '.join(f'pools[{n}]' for n in idle)}), so its RuntimeClass, sample pod "
                "and proof Job are left out until one has nodes")
    if spec.tenants and not spec.enabled_sandboxes:
        warnings.append("tenants: no sandbox pool has nodes, so no tenant pod can run (each "
                        "must name a sandbox RuntimeClass)")
    return warnings
