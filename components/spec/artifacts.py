"""Every artifact a stack makes its nodes fetch: each download's URL (with its pinned
checksum), each image, and the package archives cloud-init may use.

The URL patterns are those the node scripts build from their parameters; the image names are
those in the manifests and kubeadm's configuration. `python -m artifacts` prints this list so
an operator can fill a mirror, and validation uses it to say what would still go to the
internet.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.spec.defaults import DEFAULT_BASE_IMAGE, DEFAULTS
from components.spec.mirrors import UPSTREAM_REGISTRIES
from components.spec.model import (
    KUBE_VIP_REPOSITORY,
    PROOF_IMAGE,
    SAMPLE_IMAGE,
    Artifact,
    ClusterSpec,
)

# Debian's archives, used by cloud-init only for packages a base image lacks.
DEBIAN_ARCHIVE = "http://deb.debian.org/debian"
DEBIAN_SECURITY_ARCHIVE = "http://deb.debian.org/debian-security"


@dataclass(frozen=True)
class Fetch:
    kind: str  # "file", "image", "base-image" or "apt"
    source: str  # a URL, or an image's reference as the manifests name it
    checksum: str | None  # "<algorithm>:<hex>" where one is pinned
    origin: str  # "mirror", "stack" (a source the stack names itself) or "internet"
    via: str | None = None  # an image's registry mirror


def _origin(url: str, default: str, mirror: str | None) -> str:
    if mirror and url.startswith(f"{mirror}/"):
        return "mirror"
    return "internet" if url.startswith(default.rstrip("/")) else "stack"


def _files(spec: ClusterSpec) -> list[Fetch]:
    files = spec.mirrors.files
    k8s = spec.kubernetes

    def fetch(url: str, checksum: str | None, section: str) -> Fetch:
        return Fetch("file", url, checksum, _origin(url, DEFAULTS[section]["baseUrl"], files))

    def artifact(a: Artifact, section: str, path: str) -> Fetch:
        return fetch(f"{a.base_url}/{path}", a.checksum, section)

    out = [artifact(getattr(k8s, b), "kubernetes", f"v{k8s.version}/bin/linux/amd64/{b}")
           for b in ("kubeadm", "kubelet", "kubectl")]
    c, r, cni, cri = spec.containerd, spec.runc, spec.cni_plugins, spec.crictl
    out += [
        artifact(cri, "crictl", f"v{cri.version}/crictl-v{cri.version}-linux-amd64.tar.gz"),
        artifact(c, "containerd", f"v{c.version}/containerd-{c.version}-linux-amd64.tar.gz"),
        artifact(r, "runc", f"v{r.version}/runc.amd64"),
        artifact(cni, "cniPlugins", f"v{cni.version}/cni-plugins-linux-amd64-v{cni.version}.tgz"),
    ]
    if "gvisor" in spec.enabled_sandboxes:
        g = spec.gvisor
        names = (("runsc", "containerd-shim-runsc-v1") if g.layout == "binaries"
                 else ("gvisor.tar.bz2",))
        for name in names:
            url = f"{g.base_url}/{g.release}/x86_64/{name}"
            pinned = g.checksums.get(name)
            out.append(fetch(url, f"sha512:{pinned}" if pinned else None, "gvisor"))
            # The published digest is fetched too: a pin must agree with it.
            out.append(fetch(f"{url}.sha512", None, "gvisor"))
    if "kata" in spec.enabled_sandboxes:
        k = spec.kata.artifact
        out.append(artifact(k, "kata", f"{k.version}/kata-static-{k.version}-amd64.tar.xz"))
    return out


def image_registry(reference: str) -> str:
    """The registry host of a fully qualified image reference."""
    return reference.split("/", 1)[0]


def stack_images(spec: ClusterSpec) -> list[str]:
    """Every image the cluster pulls, as the manifests and kubeadm name them."""
    cni = spec.cni
    images = [*spec.kubernetes.control_plane_images,
              f"{cni.image_registry}/flannel:{cni.flannel_version}",
              f"{cni.image_registry}/flannel-cni-plugin:{cni.flannel_cni_plugin_version}",
              cni.network_policy_image]
    if spec.uses_vip:
        images.append(f"{KUBE_VIP_REPOSITORY}:{spec.kube_vip_version}")
    if spec.enabled_sandboxes:
        images += [SAMPLE_IMAGE, PROOF_IMAGE]
    return images


def _images(spec: ClusterSpec) -> list[Fetch]:
    out = []
    for image in stack_images(spec):
        registry = image_registry(image)
        via = spec.mirrors.registry_host(registry)
        origin = ("mirror" if via else "internet" if registry in UPSTREAM_REGISTRIES
                  else "stack")
        out.append(Fetch("image", image, None, origin, via))
    return out


def _machine_images(spec: ClusterSpec) -> list[Fetch]:
    out: dict[str, Fetch] = {}
    for pool in spec.pools:
        image = pool.base_image
        if image in out or not pool.count:
            continue
        origin = _origin(image, DEFAULT_BASE_IMAGE, spec.mirrors.files) \
            if "://" in image else "stack"
        out[image] = Fetch("base-image", image, pool.base_image_checksum, origin)
    return list(out.values())


def _apt(spec: ClusterSpec) -> list[Fetch]:
    m = spec.mirrors
    return [Fetch("apt", m.apt or DEBIAN_ARCHIVE, None, "mirror" if m.apt else "internet"),
            Fetch("apt", m.apt_security or DEBIAN_SECURITY_ARCHIVE, None,
                  "mirror" if m.apt_security else "internet")]


def stack_fetches(spec: ClusterSpec) -> list[Fetch]:
    """Everything the stack fetches, in the order a cluster comes up."""
    return [*_machine_images(spec), *_apt(spec), *_files(spec), *_images(spec)]


def internet_fetches(spec: ClusterSpec) -> list[Fetch]:
    return [f for f in stack_fetches(spec) if f.origin == "internet"]


def partial_mirror_warning(spec: ClusterSpec) -> str | None:
    """With some mirrors named (and not offline), what still comes from the internet."""
    if not spec.mirrors.any or spec.mirrors.offline:
        return None
    online = internet_fetches(spec)
    if not online:
        return None
    return ("mirrors are set, but these still come from the internet (set mirrors.offline to "
            "refuse them):\n" + "\n".join(f"  {f.kind} {f.source}" for f in online))
