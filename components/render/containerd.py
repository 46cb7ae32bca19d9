"""containerd's CRI config and gVisor's runsc.toml, rendered as text.

containerd 1.6/1.7 read `version = 2` with the CRI plugin `io.containerd.grpc.v1.cri`;
containerd 2.x reads `version = 3` with `io.containerd.cri.v1.runtime` / `...cri.v1.images`.
A version-2 block inside a version-3 file is silently ignored (pods then fail with "no runtime
for runsc"), so the node script detects the installed version and installs the matching file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

KNOWN_HANDLERS = ("runc", "runsc", "kata")
RUNSC_CONFIG_PATH = "/etc/containerd/runsc.toml"
# Where install-kata.sh puts the static release's configuration (qemu hypervisor).
KATA_CONFIG_PATH = "/opt/kata/share/defaults/kata-containers/configuration.toml"
# kubeadm 1.34's pause image; matching it avoids the kubelet/containerd sandbox image mismatch.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
# One hosts.toml per upstream registry (`<dir>/<registry>/hosts.toml`), read at every pull.
REGISTRY_CONFIG_DIR = "/etc/containerd/certs.d"
# Where an upstream registry's default endpoint differs from its name.
_UPSTREAM_SERVER = {"docker.io": "https://registry-1.docker.io"}

_RUNTIME_PLUGIN = {2: 'plugins."io.containerd.grpc.v1.cri"',
                   3: 'plugins."io.containerd.cri.v1.runtime"'}
_IMAGES_PLUGIN = {2: 'plugins."io.containerd.grpc.v1.cri"',
                  3: 'plugins."io.containerd.cri.v1.images"'}
# The NRI socket kube-network-policies connects to (containerd's default path).
NRI_SOCKET = "/var/run/nri/nri.sock"


def config_version_for(containerd_version: str) -> int:
    """The config schema version a containerd release reads ("1.7.29" -> 2, "2.1.5" -> 3)."""
    parts = containerd_version.lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise ValueError(f"not a containerd version: {containerd_version!r}") from None
    if major == 1 and minor in (6, 7):
        return 2
    if major == 2:
        return 3
    raise ValueError(f"unsupported containerd version {containerd_version!r}; "
                     "supported: 1.6, 1.7, 2.x")


def _toml_value(value: str | bool | int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def render_containerd_config(
    config_version: int,
    handlers: Sequence[str],
    *,
    runsc_config_path: str = RUNSC_CONFIG_PATH,
    restrict_oom_score_adj: bool = False,
    snapshotter: str = "overlayfs",
    sandbox_image: str = PAUSE_IMAGE,
    systemd_cgroup: bool = True,
    registry_config_dir: str = REGISTRY_CONFIG_DIR,
    nri_socket: str = NRI_SOCKET,
) -> str:
    """The whole config.toml for one node; the node script replaces the file, never appends.

    `restrict_oom_score_adj` is for nodes that run inside an unprivileged container (no
    CAP_SYS_RESOURCE) and `systemd_cgroup=False` for hosts without systemd; real nodes keep
    the defaults; tests that run several containerds on one host give each its `nri_socket`.
    """
    if config_version not in _RUNTIME_PLUGIN:
        raise ValueError(f"config_version must be 2 (containerd 1.6/1.7) or 3 (2.x), "
                         f"not {config_version!r}")
    unknown = [h for h in handlers if h not in KNOWN_HANDLERS]
    if unknown:
        raise ValueError(f"unknown handlers {unknown}; known: {', '.join(KNOWN_HANDLERS)}")
    if "runc" not in handlers:
        raise ValueError("runc must always be configured: system pods (CNI, kube-proxy) use it")

    runtime = _RUNTIME_PLUGIN[config_version]
    images = _IMAGES_PLUGIN[config_version]
    runtimes = f"{runtime}.containerd.runtimes"
    lines = [
        "# Rendered by sandboxed-k8s; replaced whole on every run, do not edit by hand.",
        f"version = {config_version}",
        "",
    ]
    if config_version == 2:
        lines += [
            f"[{runtime}]",
            f"  sandbox_image = {_toml_value(sandbox_image)}",
            f"  restrict_oom_score_adj = {_toml_value(restrict_oom_score_adj)}",
            "",
            f"[{runtime}.containerd]",
            f"  snapshotter = {_toml_value(snapshotter)}",
            '  default_runtime_name = "runc"',
            "",
            f"[{images}.registry]",
            f"  config_path = {_toml_value(registry_config_dir)}",
            "",
        ]
    else:
        lines += [
            f"[{images}]",
            f"  snapshotter = {_toml_value(snapshotter)}",
            "",
            f"[{images}.pinned_images]",
            f"  sandbox = {_toml_value(sandbox_image)}",
            "",
            f"[{images}.registry]",
            f"  config_path = {_toml_value(registry_config_dir)}",
            "",
            f"[{runtime}]",
            f"  restrict_oom_score_adj = {_toml_value(restrict_oom_score_adj)}",
            "",
            f"[{runtime}.containerd]",
            '  default_runtime_name = "runc"',
            "",
        ]
    # Sorted by KNOWN_HANDLERS so the same handler set always renders the same bytes.
    for handler in (h for h in KNOWN_HANDLERS if h in handlers):
        lines += _runtime_block(runtimes, handler, runsc_config_path, systemd_cgroup)
    lines += _nri_block(nri_socket)
    return "\n".join(lines).rstrip() + "\n"


def _nri_block(socket: str) -> list[str]:
    """NRI on (1.7 ships it off, 2.x on): kube-network-policies learns each pod's IPs from the
    runtime as the sandbox is created, so a new pod's first packets are already judged by the
    policies rather than let through before the API reports its address. (1.6 has no such
    plugin and ignores the table.)"""
    return ['[plugins."io.containerd.nri.v1.nri"]', "  disable = false",
            f"  socket_path = {_toml_value(socket)}", ""]


def _runtime_block(runtimes: str, handler: str, runsc_config_path: str,
                   systemd_cgroup: bool) -> list[str]:
    table = f"{runtimes}.{handler}"
    if handler == "runc":
        # kubelet uses the systemd cgroup driver (kubeadm's default); runc must match it.
        return [f"[{table}]", '  runtime_type = "io.containerd.runc.v2"', "",
                f"[{table}.options]", f"  SystemdCgroup = {_toml_value(systemd_cgroup)}", ""]
    if handler == "runsc":
        return [f"[{table}]", '  runtime_type = "io.containerd.runsc.v1"', "",
                f"[{table}.options]", '  TypeUrl = "io.containerd.runsc.v1.options"',
                f"  ConfigPath = {_toml_value(runsc_config_path)}", ""]
    # Without privileged_without_host_devices a privileged Kata pod gets every host block
    # device hot-plugged into its guest. No pod_annotations: annotations that reach the
    # runtime would let a tenant change hypervisor settings. ConfigPath names the release's
    # file explicitly, as kata-deploy does, rather than relying on the shim's search path.
    return [f"[{table}]", '  runtime_type = "io.containerd.kata.v2"',
            "  privileged_without_host_devices = true", "",
            f"[{table}.options]", f"  ConfigPath = {_toml_value(KATA_CONFIG_PATH)}", ""]


def _flag_value(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_runsc_toml(platform: str = "systrap",
                      flags: Mapping[str, str | bool] | None = None,
                      systemd_cgroup: bool = True) -> str:
    """/etc/containerd/runsc.toml: each key of [runsc_config] becomes a runsc --flag=value.

    Every value is written as a string: the shim decodes [runsc_config] into strings and
    rejects a TOML boolean ("incompatible types"), failing every pod.
    `systemd_cgroup=False` is for hosts without systemd, as in render_containerd_config.
    """
    values: dict[str, str | bool] = {"platform": platform, **dict(flags or {})}
    if systemd_cgroup:
        # The kubelet's pod cgroup is a systemd slice (`slice:prefix:name` paths): without the
        # flag, runsc releases that do not detect the format put the sandbox outside it, and
        # neither the pod's limits nor the RuntimeClass overhead bound it.
        values["systemd-cgroup"] = True
    if "allow-flag-override" in values:
        raise ValueError("allow-flag-override would let pod annotations change runsc flags")
    lines = ["# Rendered by sandboxed-k8s; replaced whole on every run.", "[runsc_config]"]
    lines += [f"  {json.dumps(k)} = {json.dumps(_flag_value(v))}"
              for k, v in sorted(values.items())]
    return "\n".join(lines) + "\n"


def render_registry_hosts(upstream: str, mirror: str) -> str:
    """containerd's hosts.toml sending an upstream registry's pulls to a mirror.

    A mirror URL with a path (`http://m:5000/v2/registry.k8s.io`) is used as the API root as
    written (override_path); one without a path is a plain registry mirror. The upstream stays
    the last resort, as containerd always keeps it.
    """
    server = _UPSTREAM_SERVER.get(upstream, f"https://{upstream}")
    lines = ["# Rendered by sandboxed-k8s; replaced whole on every run.",
             f"server = {_toml_value(server)}", "",
             f"[host.{_toml_value(mirror)}]", '  capabilities = ["pull", "resolve"]']
    if "/" in mirror.split("://", 1)[-1]:
        lines.append("  override_path = true")
    return "\n".join(lines) + "\n"
