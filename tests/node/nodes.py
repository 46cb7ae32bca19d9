"""What the node fixtures hand to tests: a running containerd with config, CRI and images.

`start_node` is also what benchmarks/sandbox_overhead.py starts its nodes with."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .configs import RenderedNodeConfig, config_version_for, render_into
from .containerd import (
    Containerd,
    config_dump,
    cri_sandbox_image,
    cri_snapshotter,
    parse_dump,
    start_containerd,
)
from .cri import Crictl
from .oci import build_busybox_archive, pause_entrypoint
from .tools import ContainerdFlavor, NodeTools

TEST_IMAGE = "docker.io/library/sk8s-busybox:test"


@dataclass
class Node:
    """One running containerd with its rendered config, CRI client and images in place."""

    flavor: ContainerdFlavor
    rendered: RenderedNodeConfig
    daemon: Containerd
    cri: Crictl
    image: str
    sandbox_image: str
    dump: str

    def stop(self) -> None:
        self.cri.remove_all_pods()
        self.daemon.stop()


# node_factory(flavor_name, config_version=None, runsc_flags=None) -> Node
NodeFactory = Callable[..., Node]


def pause_archive(image_dir: Path, ref: str) -> Path:
    """The busybox layer with the pause loop as entrypoint, tagged `ref` (built once)."""
    dest = image_dir / ("pause-" + ref.replace("/", "_").replace(":", "_") + ".tar")
    if not dest.exists():
        build_busybox_archive(dest, ref, entrypoint=pause_entrypoint())
    return dest


def start_node(
    tools: NodeTools,
    flavor_name: str,
    workdir: Path,
    image_archive: Path,
    image_dir: Path,
    *,
    config_version: int | None = None,
    runsc_flags: dict[str, str | bool] | None = None,
    image: str = TEST_IMAGE,
    extra_config: str = "",
    timings: dict[str, float] | None = None,
) -> Node:
    """A containerd of `flavor_name` running the rendered config in `workdir`, with `image`
    (imported from `image_archive`) and the sandbox image in place.

    config_version None = the version the renderer picks for that containerd; runsc_flags are
    added to the renderer's runsc.toml flags; extra_config is appended to the rendered
    config.toml (tables it does not have). The caller stops the node (`Node.stop`)."""
    flavor = tools.flavors[flavor_name]
    version = config_version or config_version_for(flavor.version)
    rendered = render_into(workdir / "etc", version, runsc_flags=dict(runsc_flags or {}))
    if extra_config:
        with rendered.config_path.open("a") as config:
            config.write("\n" + extra_config)
    dump = config_dump(flavor, rendered.config_path)
    parsed = parse_dump(dump)
    t0 = time.monotonic()
    daemon = start_containerd(flavor, rendered.config_path, workdir)
    cri = Crictl(tools.crictl, daemon.endpoint, workdir / "cri")
    node = Node(flavor, rendered, daemon, cri, image, cri_sandbox_image(parsed), dump)
    try:
        cri.wait_runtime_ready()
        if timings is not None:
            timings[f"containerd {flavor_name} start to CRI ready"] = time.monotonic() - t0
        snapshotter = cri_snapshotter(parsed)
        daemon.import_image(image_archive, snapshotter)
        daemon.import_image(pause_archive(image_dir, node.sandbox_image), snapshotter)
        cri.wait_image(image)
        cri.wait_image(node.sandbox_image)
    except BaseException:
        node.stop()
        raise
    return node
