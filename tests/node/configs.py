"""The configs under test, from the product renderer `components.render.containerd`.

Only what this host forces is chosen here, through the renderer's own parameters:
`restrict_oom_score_adj=True` (no CAP_SYS_RESOURCE), `systemd_cgroup=False` (PID 1 is not
systemd, so neither runc nor runsc can use the systemd cgroup driver) and an NRI socket in the
daemon's own folder (several containerds share this host). Everything else is the renderer's
default, including the overlayfs snapshotter, which works on this host.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tests.build_tools import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from components.render import containerd as renderer

ALL_HANDLERS = ("runc", "runsc", "kata")
RUNTIME_TYPES = {
    "runc": "io.containerd.runc.v2",
    "runsc": "io.containerd.runsc.v1",
    "kata": "io.containerd.kata.v2",
}


@dataclass(frozen=True)
class RenderedNodeConfig:
    config_version: int
    handlers: tuple[str, ...]
    config_path: Path
    runsc_toml_path: Path
    config_text: str
    runsc_toml_text: str


def render_into(
    workdir: Path,
    config_version: int,
    handlers: tuple[str, ...] = ALL_HANDLERS,
    runsc_flags: dict[str, str | bool] | None = None,
) -> RenderedNodeConfig:
    workdir.mkdir(parents=True, exist_ok=True)
    runsc_toml_path = workdir / "runsc.toml"
    config_path = workdir / "config.toml"
    config_text = renderer.render_containerd_config(
        config_version,
        list(handlers),
        runsc_config_path=str(runsc_toml_path),
        restrict_oom_score_adj=True,
        systemd_cgroup=False,
        nri_socket=str(workdir / "nri.sock"),
    )
    runsc_text = renderer.render_runsc_toml(flags=runsc_flags or {}, systemd_cgroup=False)
    config_path.write_text(config_text)
    runsc_toml_path.write_text(runsc_text)
    return RenderedNodeConfig(
        config_version=config_version,
        handlers=handlers,
        config_path=config_path,
        runsc_toml_path=runsc_toml_path,
        config_text=config_text,
        runsc_toml_text=runsc_text,
    )


def config_version_for(containerd_version: str) -> int:
    return renderer.config_version_for(containerd_version)
