"""The lab mirror builds the versions the program deploys by default."""

from __future__ import annotations

import re

import pytest

from components.spec import DEFAULTS

from .mirror import BUILD_SCRIPT


def pinned(name: str) -> str:
    match = re.search(rf'^{name}="([^"]+)"$', BUILD_SCRIPT.read_text(), re.MULTILINE)
    assert match is not None, f"{name} is not pinned in {BUILD_SCRIPT.name}"
    return match.group(1)


@pytest.mark.parametrize(("pin", "default"), [
    ("MIRROR_KUBERNETES_VERSION", f"v{DEFAULTS['kubernetes']['version']}"),
    ("MIRROR_CONTAINERD_VERSION", f"v{DEFAULTS['containerd']['version']}"),
    ("MIRROR_RUNC_VERSION", f"v{DEFAULTS['runc']['version']}"),
    ("MIRROR_CNI_PLUGINS_VERSION", f"v{DEFAULTS['cniPlugins']['version']}"),
    ("MIRROR_CRICTL_VERSION", f"v{DEFAULTS['crictl']['version']}"),
    ("MIRROR_FLANNEL_VERSION", DEFAULTS["cni"]["flannelVersion"]),
    ("MIRROR_FLANNEL_CNI_IMAGE_TAG", DEFAULTS["cni"]["flannelCniPluginVersion"]),
    ("MIRROR_KUBE_VIP_VERSION", DEFAULTS["kubeVip"]["version"]),
])
def test_the_mirror_pins_the_programs_default(pin: str, default: str) -> None:
    assert pinned(pin) == default


def test_the_gvisor_release_is_the_date_of_the_pinned_commit() -> None:
    date = re.search(r"-(\d{8})\d{6}-", pinned("MIRROR_GVISOR_VERSION"))
    assert date is not None
    assert pinned("MIRROR_GVISOR_RELEASE") == f"{date.group(1)}.0"


def test_the_upgrade_version_is_a_later_patch_release_of_the_default() -> None:
    """A patch release: kubeadm keeps the default's etcd, CoreDNS and pause images, so the
    mirror needs only the new Kubernetes binaries and images for the upgrade."""
    default = [int(n) for n in pinned("MIRROR_KUBERNETES_VERSION").removeprefix("v").split(".")]
    upgrade = [int(n) for n in pinned("MIRROR_UPGRADE_KUBERNETES_VERSION").removeprefix("v")
               .split(".")]
    assert upgrade[:2] == default[:2] and upgrade[2] > default[2]
