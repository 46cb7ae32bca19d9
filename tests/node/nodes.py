"""What the node fixtures hand to tests: a running containerd with config, CRI and images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .configs import RenderedNodeConfig
from .containerd import Containerd
from .cri import Crictl
from .tools import ContainerdFlavor

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


# node_factory(flavor_name, config_version=None, runsc_flags=None) -> Node
NodeFactory = Callable[..., Node]
