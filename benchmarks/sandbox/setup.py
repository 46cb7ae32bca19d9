"""The benchmark's nodes: one containerd 2.x per gVisor variant, from the node tests' harness.

Every node runs the product's rendered containerd config and runsc.toml (only the host's
constraints differ from a real node, see tests/node/configs.py) plus the variant's runsc
flags; the runc measurements use the default variant's node. The image is the node tests'
busybox image plus the `probe` workload binary (probe.go, built here with the machine's Go).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.node.nodes import Node, start_node
from tests.node.oci import build_busybox_archive
from tests.node.tools import NodeTools, discover

PROBE_SOURCE = Path(__file__).with_name("probe.go")
PROBE_IN_IMAGE = "/bin/probe"
IMAGE = "docker.io/library/sk8s-bench:probe"
CACHE = Path(os.environ.get("SANDBOXED_K8S_CACHE", Path.home() / ".cache" / "sandboxed-k8s"))


@dataclass(frozen=True)
class Variant:
    """One way to run a pod: a CRI handler and, for runsc, the flags added to runsc.toml."""

    name: str
    handler: str
    runsc_flags: dict[str, str | bool] = field(default_factory=dict)
    node_key: str = ""  # variants with the same key share a node (runc rides on the default)


RUNC = Variant("runc", "runc", node_key="default")
RUNSC = Variant("runsc (defaults)", "runsc", node_key="default")
GVISOR_SETTINGS = (
    Variant("runsc platform=ptrace", "runsc", {"platform": "ptrace"}, "ptrace"),
    Variant("runsc directfs=false", "runsc", {"directfs": "false"}, "nodirectfs"),
    Variant("runsc overlay2=root:memory", "runsc", {"overlay2": "root:memory"}, "overlaymem"),
)
KVM = Variant("runsc platform=kvm", "runsc", {"platform": "kvm"}, "kvm")


def variants(kvm: bool) -> tuple[Variant, ...]:
    return (RUNC, RUNSC, *GVISOR_SETTINGS, *((KVM,) if kvm else ()))


def build_probe() -> Path:
    """probe.go as a static binary, cached by the source's hash."""
    digest = hashlib.sha256(PROBE_SOURCE.read_bytes()).hexdigest()[:16]
    out = CACHE / "bench" / f"probe-{digest}"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-trimpath")
        subprocess.run(["go", "build", "-ldflags", "-s -w", "-o", str(tmp), str(PROBE_SOURCE)],
                       check=True, env=env, timeout=600)
        tmp.rename(out)
    return out




CNI_NULL = Path(__file__).with_name("cni-null.sh")


def cni_config(workdir: Path) -> str:
    """containerd's CNI table: its own loopback, and a private folder holding one network of
    the do-nothing plugin (cni-null.sh): each pod's namespace has `lo` only."""
    bin_dir, conf_dir = workdir / "cni-bin", workdir / "cni"
    bin_dir.mkdir(parents=True, exist_ok=True)
    conf_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(CNI_NULL, bin_dir / "cni-null")
    (bin_dir / "cni-null").chmod(0o755)
    network = {"cniVersion": "1.0.0", "name": "bench", "plugins": [{"type": "cni-null"}]}
    (conf_dir / "10-bench.conflist").write_text(json.dumps(network) + "\n")
    return (f"[plugins.\"io.containerd.cri.v1.runtime\".cni]\n"
            f"  bin_dirs = [\"{bin_dir}\"]\n  conf_dir = \"{conf_dir}\"\n"
            "  use_internal_loopback = true\n")


@dataclass
class Bench:
    tools: NodeTools
    nodes: dict[str, Node]  # node_key -> node

    def node(self, variant: Variant) -> Node:
        return self.nodes[variant.node_key]


@contextmanager
def bench_nodes(workdir: Path, chosen: tuple[Variant, ...]) -> Iterator[Bench]:
    """Start one containerd 2.x per distinct node_key; stopped (pods, shims, mounts) on exit."""
    tools = discover()
    images = workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    archive = build_busybox_archive(images / "bench.tar", IMAGE,
                                    extra_files={PROBE_IN_IMAGE: build_probe().read_bytes()})
    flags = {v.node_key: v.runsc_flags for v in chosen}
    with ExitStack() as stack:
        nodes: dict[str, Node] = {}
        for key, runsc_flags in flags.items():
            node_dir = workdir / f"node-{key}"
            node = start_node(tools, "2.x", node_dir, archive.path, images,
                              runsc_flags=runsc_flags, image=IMAGE,
                              extra_config=cni_config(node_dir))
            stack.callback(node.stop)
            nodes[key] = node
        yield Bench(tools, nodes)
