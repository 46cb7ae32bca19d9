"""cloud-init documents, checked as data and by `cloud-init schema`."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.render.cloudinit import (
    APT_SOURCES_LIST,
    KERNEL_MODULES,
    PACKAGES,
    SYSCTLS,
    NodeCloudInit,
    StaticNetwork,
    render_meta_data,
    render_network_config,
    render_user_data,
)

PRIVATE = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACAvLvJgQEhCLds9gCmAv56RtvqED2UFPOhI5n23bNeK1AAAAJABAwj5AQMI
-----END OPENSSH PRIVATE KEY-----
"""
PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC8u8mBASEIt2z2AKYC/npG2+oQPZQU86Ejmfbds14rU"
ADMIN = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFkbWluLWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3"
NODE = NodeCloudInit("worker1", "k8sadmin", ADMIN, PRIVATE, PUBLIC)


def test_user_data_content() -> None:
    text = render_user_data(NODE)
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    user = doc["users"][0]
    assert user["name"] == "k8sadmin" and user["ssh_authorized_keys"] == [ADMIN]
    assert user["lock_passwd"] is True and doc["ssh_pwauth"] is False
    assert doc["ssh_keys"]["ed25519_private"] == PRIVATE
    assert doc["ssh_keys"]["ed25519_public"] == PUBLIC
    assert doc["ssh_deletekeys"] is True and doc["ssh_genkeytypes"] == ["ed25519"]
    # Packages come from runcmd, and only those the image lacks (no repository needed when
    # the image has them all); cloud-init's own `packages` would always run apt-get update.
    assert "packages" not in doc and "package_update" not in doc
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    assert files["/etc/modules-load.d/kubernetes.conf"].split() == list(KERNEL_MODULES)
    for key, value in SYSCTLS.items():
        assert f"{key} = {value}" in files["/etc/sysctl.d/90-kubernetes.conf"]
    (script,) = doc["runcmd"]
    assert script[:2] == ["sh", "-ec"]  # the first failing step fails cloud-init
    assert "swapoff -a" in script[2] and "modprobe -a overlay br_netfilter" in script[2]
    assert doc["locale"] == "C.UTF-8" and doc["manage_etc_hosts"] is True
    assert f"for p in {' '.join(PACKAGES)}; do" in script[2]


def test_runcmd_installs_only_missing_packages(tmp_path: Path) -> None:
    """The package part of runcmd under `sh -e`, with dpkg-query and apt-get as stubs."""
    (script,) = yaml.safe_load(render_user_data(NODE))["runcmd"]
    package_part = script[2].split("\nmodprobe")[0]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    (bin_dir / "dpkg-query").write_text(
        '#!/bin/sh\ncase "$3" in curl|socat) exit 1;; esac\necho "install ok installed"\n')
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    subprocess.run(["sh", "-ec", package_part], env=env, check=True)
    # Only what the node steps call: no recommended packages pulled in besides.
    assert log.read_text().splitlines() == [
        "update -q", "install -y -q --no-install-recommends curl socat"]
    (bin_dir / "dpkg-query").write_text('#!/bin/sh\necho "install ok installed"\n')
    log.unlink()
    subprocess.run(["sh", "-ec", package_part], env=env, check=True)
    assert not log.exists()  # everything present: apt is never called


def test_apt_mirrors_replace_the_images_sources() -> None:
    assert "apt" not in yaml.safe_load(render_user_data(NODE))
    apt = yaml.safe_load(render_user_data(MIRRORED))["apt"]
    assert apt == {
        "primary": [{"arches": ["default"], "uri": "http://10.19.0.1:8080/debian"}],
        "security": [{"arches": ["default"], "uri": "http://10.19.0.1:8080/debian-security"}],
        "preserve_sources_list": False,
        "sources_list": APT_SOURCES_LIST,
    }


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="needs Debian's cloud-init")
def test_apt_sources_list_names_only_the_suites_packages_come_from() -> None:
    """As cloud-init's own templater fills it in on a bookworm node (no deb-src, no
    backports: a site's mirror need not carry them)."""
    apt = yaml.safe_load(render_user_data(MIRRORED))["apt"]
    params = {"RELEASE": "bookworm", "codename": "bookworm",
              "MIRROR": "http://10.19.0.1:8080/debian",
              "PRIMARY": "http://10.19.0.1:8080/debian",
              "SECURITY": "http://10.19.0.1:8080/debian-security"}
    # Debian's cloud-init (the nodes' own) is installed for the system Python, not the venv.
    rendered = subprocess.run(
        ["/usr/bin/python3", "-c", "import json, sys; from cloudinit import templater; "
         "doc = json.load(sys.stdin); "
         "print(templater.render_string(doc['text'], doc['params']), end='')"],
        input=json.dumps({"text": apt["sources_list"], "params": params}),
        capture_output=True, text=True, check=True).stdout
    assert rendered.splitlines() == [
        "deb http://10.19.0.1:8080/debian bookworm main",
        "deb http://10.19.0.1:8080/debian bookworm-updates main",
        "deb http://10.19.0.1:8080/debian-security bookworm-security main",
    ]


def test_network_config_is_static() -> None:
    doc = yaml.safe_load(render_network_config(StaticNetwork(
        "52:54:00:aa:bb:cc", ipaddress.IPv4Interface("10.17.0.11/24"),
        ipaddress.IPv4Address("10.17.0.1"), [ipaddress.IPv4Address("10.17.0.1")])))
    eth0 = doc["ethernets"]["eth0"]
    assert doc["version"] == 2
    assert eth0["match"] == {"macaddress": "52:54:00:aa:bb:cc"}
    assert eth0["addresses"] == ["10.17.0.11/24"]
    assert eth0["routes"] == [{"to": "0.0.0.0/0", "via": "10.17.0.1"}]


def test_meta_data() -> None:
    assert yaml.safe_load(render_meta_data("dev-worker1", "worker1")) == {
        "instance-id": "dev-worker1", "local-hostname": "worker1"}


MIRRORED = dataclasses.replace(NODE, apt_mirror="http://10.19.0.1:8080/debian",
                               apt_security_mirror="http://10.19.0.1:8080/debian-security")


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="needs Debian's cloud-init")
@pytest.mark.parametrize("node", [NODE, MIRRORED], ids=["upstream", "mirrored"])
def test_cloud_init_schema_accepts_user_data(node: NodeCloudInit, tmp_path: Path) -> None:
    path = tmp_path / "user-data"
    path.write_text(render_user_data(node))
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="needs Debian's cloud-init")
def test_cloud_init_schema_rejects_a_broken_document(tmp_path: Path) -> None:
    # Proves the check above can fail.
    path = tmp_path / "user-data"
    path.write_text(render_user_data(NODE).replace("ssh_pwauth: false", "ssh_pwauth: []"))
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0


def test_test_image_has_every_package_the_user_data_installs() -> None:
    """tools/build-test-vm-image.sh's image then needs no repository (the e2e layer's nodes
    have none)."""
    script = (Path(__file__).resolve().parents[2] / "tools" / "build-test-vm-image.sh")
    block = script.read_text().split("PACKAGES=(", 1)[1].split("\n)", 1)[0]
    listed = {word for line in block.splitlines()
              for word in line.split("#", 1)[0].split()}
    assert set(PACKAGES) - {"tar"} <= listed  # tar is Essential: always there
