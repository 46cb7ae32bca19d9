"""Every checksum the program knows, keyed by component and version: the one place pins live.

A component's checksums come from here for the version the stack chooses, unless the stack
gives them itself (a site whose mirror serves its own builds pins those). A version missing
here must have its checksums given, or the stack is refused: a changed version never silently
keeps another version's checksums only to fail on the node with a mismatch.

Add a version only with digests checked against what upstream publishes (`PUBLISHED`).
"""

from __future__ import annotations

from collections.abc import Mapping

# Config section -> version -> {config key: hex digest}. `gvisor` is keyed by `release` and
# pinned for `layout: binaries` only (the archive is checked against its published .sha512).
PINS: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "kubernetes": {
        "1.34.2": {
            "kubeadmSha256": "6a2346006132f6e1ed0b5248e518098cf5abbce25bf11b8926fb1073091b83f4",
            "kubeletSha256": "9c5e717b774ee9b9285ce47e7d2150c29e84837eb19a7eaa24b60b1543c9d58f",
            "kubectlSha256": "9591f3d75e1581f3f7392e6ad119aab2f28ae7d6c6e083dc5d22469667f27253",
        },
    },
    "containerd": {
        "2.1.5": {"sha256": "403af72d9f956ed8a5ad5b0ac0f1e8e371a1488f2b9edf9b4ba13db0653936ea"},
    },
    "runc": {
        "1.3.4": {"sha256": "5966ca40b6187b30e33bfc299c5f1fe72e8c1aa01cf3fefdadf391668f47f103"},
    },
    "cniPlugins": {
        "1.8.0": {"sha256": "ab3bda535f9d90766cccc90d3dddb5482003dd744d7f22bcf98186bf8eea8be6"},
    },
    "crictl": {
        "1.34.0": {"sha256": "a8ff2a3edb37a98daf3aba7c3b284fe0aa5bff24166d896ab9ef64c8913c9f51"},
    },
    "gvisor": {
        "20251118.0": {
            "runscSha512": "cc95eec3e22a574ac533278ee8c72672542edf0ab467a89c13f02abea6404ffe"
                           "20ea4a538a3482b072a8e45222a13cefbf9e7f44bada35b436769e04b12ab970",
            "shimSha512": "b0f0fa1ee431c63cfbb9007a62c49a374bcbfbbbf5997e63c827d1673f6933d6"
                          "5044ca4f06608bb494f870ced97295dc065810f5e905dfd4a632fe4d61faff7f",
        },
    },
    "kata": {
        "3.7.0": {"sha256": "bebf218cafdc082476c7dabbcc5439aee6a41d6dda24dd3cfffbe0a6ae94e23d"},
    },
}

# Where upstream publishes each component's digests, for the message that asks for them.
PUBLISHED: Mapping[str, str] = {
    "kubernetes": "dl.k8s.io publishes each as <binary>.sha256",
    "containerd": "the GitHub release lists containerd-<version>-linux-amd64.tar.gz.sha256sum",
    "runc": "the GitHub release lists runc.sha256sum",
    "cniPlugins": "the GitHub release lists cni-plugins-linux-amd64-v<version>.tgz.sha256",
    "crictl": "the GitHub release lists crictl-v<version>-linux-amd64.tar.gz.sha256",
    "gvisor": "the release bucket publishes <release>/x86_64/<file>.sha512",
    "kata": "the GitHub release page shows the sha256 digest of "
            "kata-static-<version>-amd64.tar.xz",
}

def pinned(section: str, version: str) -> Mapping[str, str]:
    """The checksums known for `version` of `section` (config keys -> hex), empty if none."""
    return PINS.get(section, {}).get(version, {})

