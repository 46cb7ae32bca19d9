"""containerd config and runsc.toml renderers, checked as text and by real containerd 1.6."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from components.render.containerd import (
    config_version_for,
    render_containerd_config,
    render_runsc_toml,
)

V2_PLUGIN = "io.containerd.grpc.v1.cri"
V3_PLUGIN = "io.containerd.cri.v1.runtime"


def runtimes(text: str, version: int) -> dict[str, dict[str, object]]:
    doc = tomllib.loads(text)
    assert doc["version"] == version
    plugin = V2_PLUGIN if version == 2 else V3_PLUGIN
    return doc["plugins"][plugin]["containerd"]["runtimes"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("version", "expected"), [
    ("1.6.20", 2), ("1.7.29", 2), ("v2.1.5", 3), ("2.0.0", 3), ("2.2.1", 3)])
def test_config_version_for(version: str, expected: int) -> None:
    assert config_version_for(version) == expected


@pytest.mark.parametrize("version", ["1.5.9", "3.0.0", "latest", ""])
def test_config_version_for_rejects_unsupported(version: str) -> None:
    with pytest.raises(ValueError):
        config_version_for(version)


@pytest.mark.parametrize("version", [2, 3])
def test_every_handler_rendered_under_the_right_plugin(version: int) -> None:
    text = render_containerd_config(version, ["runc", "runsc", "kata"])
    found = runtimes(text, version)
    assert set(found) == {"runc", "runsc", "kata"}
    assert found["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert found["runc"]["options"] == {"SystemdCgroup": True}
    assert found["runsc"]["runtime_type"] == "io.containerd.runsc.v1"
    assert found["runsc"]["options"] == {"TypeUrl": "io.containerd.runsc.v1.options",
                                         "ConfigPath": "/etc/containerd/runsc.toml"}
    assert found["kata"]["runtime_type"] == "io.containerd.kata.v2"
    assert found["kata"]["privileged_without_host_devices"] is True
    assert found["kata"]["options"] == {
        "ConfigPath": "/opt/kata/share/defaults/kata-containers/configuration.toml"}
    assert "pod_annotations" not in found["kata"]
    other = V3_PLUGIN if version == 2 else V2_PLUGIN
    assert other not in text  # a block for the other schema would be silently ignored


def test_only_requested_handlers_and_stable_bytes() -> None:
    text = render_containerd_config(3, ["runsc", "runc"])
    assert set(runtimes(text, 3)) == {"runc", "runsc"}
    assert text == render_containerd_config(3, ["runc", "runsc"])


def test_nri_is_enabled_for_kube_network_policies() -> None:
    """containerd 1.7 ships NRI disabled; the policy enforcer's pod-IP lookup needs it."""
    for version in (2, 3):
        nri = tomllib.loads(render_containerd_config(version, ["runc"]))["plugins"][
            "io.containerd.nri.v1.nri"]
        assert nri == {"disable": False, "socket_path": "/var/run/nri/nri.sock"}


@pytest.mark.parametrize(("handlers", "version"), [
    (["runsc"], 3), (["runc", "crun"], 3), (["runc"], 1)])
def test_invalid_requests_rejected(handlers: list[str], version: int) -> None:
    with pytest.raises(ValueError):
        render_containerd_config(version, handlers)


def test_runsc_toml() -> None:
    doc = tomllib.loads(render_runsc_toml("systrap", {"debug": True, "overlay2": "root:self"}))
    # Strings only: the shim rejects TOML booleans.
    assert doc == {"runsc_config": {"platform": "systrap", "debug": "true",
                                    "overlay2": "root:self", "systemd-cgroup": "true"}}
    plain = tomllib.loads(render_runsc_toml("systrap", {}, systemd_cgroup=False))
    assert plain == {"runsc_config": {"platform": "systrap"}}
    with pytest.raises(ValueError):
        render_runsc_toml("systrap", {"allow-flag-override": True})


@pytest.mark.skipif(shutil.which("containerd") is None, reason="needs Debian's containerd")
def test_debian_containerd_parses_version_2_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(render_containerd_config(2, ["runc", "runsc", "kata"]))
    dump = subprocess.run(["containerd", "--config", str(config), "config", "dump"],
                          check=True, capture_output=True, text=True).stdout
    for handler in ("runc", "runsc", "kata"):
        assert f'[plugins."{V2_PLUGIN}".containerd.runtimes.{handler}]' in dump
    assert "privileged_without_host_devices = true" in dump
    assert 'ConfigPath = "/etc/containerd/runsc.toml"' in dump
