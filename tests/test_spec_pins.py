"""Checksums come from the pins table for the version a stack chooses, unless it gives them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.spec import DEFAULTS, ConfigError, load
from components.spec.pins import PINS
from components.spec.stack_file import STACKS_DIR
from tests.test_spec import dev_config

HEX64 = {"a": "a" * 64, "b": "b" * 64, "c": "c" * 64}
HEX128 = {"a": "a" * 128, "b": "b" * 128}
KATA_POOL = {"name": "kata", "names": ["worker3"], "runtimes": ["kata"]}


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load(config, "dev")
    return error.value.problems


def test_every_default_version_is_pinned() -> None:
    for section, keys in (("kubernetes", {"kubeadmSha256", "kubeletSha256", "kubectlSha256"}),
                          ("containerd", {"sha256"}), ("runc", {"sha256"}),
                          ("cniPlugins", {"sha256"}), ("crictl", {"sha256"}),
                          ("kata", {"sha256"}), ("gvisor", {"runscSha512", "shimSha512"})):
        version = DEFAULTS[section]["release" if section == "gvisor" else "version"]
        assert set(PINS[section][version]) == keys, section
        # The defaults hold no checksums of their own: the table is the one place.
        assert all(DEFAULTS[section][key] is None for key in keys), section


def test_the_pinned_version_takes_its_checksums_from_the_table() -> None:
    config = dev_config()
    config["pools"].append(KATA_POOL)
    spec = load(config, "dev")
    k8s = PINS["kubernetes"]["1.34.2"]
    assert spec.kubernetes.kubelet.checksum == f"sha256:{k8s['kubeletSha256']}"
    assert spec.containerd.checksum == f"sha256:{PINS['containerd']['2.1.5']['sha256']}"
    assert spec.crictl.checksum == f"sha256:{PINS['crictl']['1.34.0']['sha256']}"
    assert spec.gvisor.checksums["runsc"] == PINS["gvisor"]["20251118.0"]["runscSha512"]
    assert spec.kata.artifact.checksum == f"sha256:{PINS['kata']['3.7.0']['sha256']}"


def test_a_new_kubernetes_version_without_checksums_is_refused_naming_the_keys() -> None:
    config = dev_config()
    config["kubernetes"]["version"] = "1.34.3"
    assert problems(config) == [
        "kubernetes.version: 1.34.3 has no pinned checksums: set kubernetes.kubeadmSha256, "
        "kubeletSha256 and kubectlSha256 (dl.k8s.io publishes each as <binary>.sha256)"]
    config["kubernetes"]["kubeadmSha256"] = HEX64["a"]
    assert problems(config) == [
        "kubernetes.version: 1.34.3 has no pinned checksums: set kubernetes.kubeletSha256 "
        "and kubectlSha256 (dl.k8s.io publishes each as <binary>.sha256)"]


@pytest.mark.parametrize(("section", "version", "key", "where"), [
    ("containerd", "2.1.6", "containerd.sha256", "containerd-<version>-linux-amd64.tar.gz"),
    ("runc", "1.3.5", "runc.sha256", "runc.sha256sum"),
    ("cniPlugins", "1.8.1", "cniPlugins.sha256", "cni-plugins-linux-amd64-v<version>.tgz"),
    ("crictl", "1.35.0", "crictl.sha256", "crictl-v<version>-linux-amd64.tar.gz.sha256"),
    ("kata", "3.8.0", "kata.sha256", "kata-static-<version>-amd64.tar.xz"),
])
def test_each_artifact_needs_checksums_for_an_unpinned_version(
        section: str, version: str, key: str, where: str) -> None:
    config = dev_config()
    config["pools"].append(KATA_POOL)
    config[section] = {"version": version}
    [problem] = problems(config)
    assert problem.startswith(f"{section}.version: {version} has no pinned checksums: "
                              f"set {key} (")
    assert where in problem
    config[section]["sha256"] = HEX64["a"]
    spec = load(config, "dev")
    artifact = {"containerd": spec.containerd, "runc": spec.runc, "cniPlugins": spec.cni_plugins,
                "crictl": spec.crictl, "kata": spec.kata.artifact}[section]
    assert (artifact.version, artifact.checksum) == (version, f"sha256:{HEX64['a']}")


def test_a_new_gvisor_release_needs_both_binaries_checksums() -> None:
    config = dev_config()
    config["gvisor"]["release"] = "20251201.0"
    assert problems(config) == [
        "gvisor.release: 20251201.0 has no pinned checksums: set gvisor.runscSha512 and "
        "shimSha512 (the release bucket publishes <release>/x86_64/<file>.sha512)"]
    config["gvisor"]["layout"] = "archive"  # checked against the published .sha512 instead
    assert load(config, "dev").gvisor.checksums == {}


def test_given_checksums_win_over_the_pinned_ones() -> None:
    """A site whose mirror serves its own builds of the same version pins those."""
    config = dev_config()
    config["kubernetes"]["kubeletSha256"] = HEX64["b"]
    config["runc"] = {"sha256": HEX64["c"]}
    config["gvisor"].update(runscSha512=HEX128["a"])
    spec = load(config, "dev")
    assert spec.kubernetes.kubelet.checksum == f"sha256:{HEX64['b']}"
    assert spec.kubernetes.kubeadm.checksum == \
        f"sha256:{PINS['kubernetes']['1.34.2']['kubeadmSha256']}"
    assert spec.runc.checksum == f"sha256:{HEX64['c']}"
    assert spec.gvisor.checksums == {
        "runsc": HEX128["a"],
        "containerd-shim-runsc-v1": PINS["gvisor"]["20251118.0"]["shimSha512"]}


def test_every_version_given_with_its_checksums_loads() -> None:
    """The lab mirror's path: its own builds, every version and checksum given."""
    config = dev_config()
    config["kubernetes"].update(version="1.35.0", kubeadmSha256=HEX64["a"],
                                kubeletSha256=HEX64["b"], kubectlSha256=HEX64["c"])
    for section in ("containerd", "runc", "cniPlugins", "crictl"):
        config[section] = {"version": "9.9.9" if section != "containerd" else "2.9.9",
                           "sha256": HEX64["a"]}
    config["gvisor"].update(release="20990101.0", runscSha512=HEX128["a"],
                            shimSha512=HEX128["b"])
    spec = load(config, "dev")
    assert (spec.kubernetes.version, spec.containerd.version, spec.gvisor.release) == \
        ("1.35.0", "2.9.9", "20990101.0")
    assert spec.kubernetes.kubectl.checksum == f"sha256:{HEX64['c']}"


def test_kata_is_not_asked_for_checksums_without_a_kata_pool() -> None:
    config = dev_config()
    config["kata"] = {"version": "3.8.0"}
    assert load(config, "dev").kata.artifact.version == "3.8.0"


def test_a_malformed_or_unsupported_version_is_one_problem() -> None:
    """Its checksums are moot until the version itself is fixed."""
    config = dev_config()
    config["kubernetes"]["version"] = "v1.35"
    config["containerd"] = {"version": "1.5.9"}
    assert [p.split(":")[0] for p in problems(config)] == ["kubernetes.version",
                                                           "containerd.version"]


@pytest.mark.parametrize("stack_path", sorted(STACKS_DIR.glob("Pulumi.*.yaml")),
                         ids=lambda p: p.name)
def test_stack_files_repeat_no_pinned_checksum(stack_path: Path) -> None:
    text = stack_path.read_text()
    pinned = [digest for versions in PINS.values() for keys in versions.values()
              for digest in keys.values()]
    assert not [d for d in pinned if d in text]


def test_an_integer_gvisor_release_names_the_release() -> None:
    """`pulumi config set --path gvisor.release 20251118` stores a number."""
    config = dev_config()
    config["gvisor"].update(release=20251118, runscSha512=HEX128["a"], shimSha512=HEX128["b"])
    assert load(config, "dev").gvisor.release == "20251118"


def test_a_float_gvisor_release_is_refused_with_how_to_quote_it() -> None:
    """An unquoted 20251118.10 reads as 20251118.1: a float cannot name a release."""
    config = dev_config()
    config["gvisor"]["release"] = 20251118.0
    assert problems(config) == ['gvisor.release: 20251118.0 was read as a number; quote it '
                                '(release: "20251118.0") so it names the release exactly']
