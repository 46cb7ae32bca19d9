"""build-seed-iso.sh and remove-seed-iso.sh: a node's cloud-init seed is built privately on the
machine running Pulumi, labelled for NoCloud, built once, and removed with nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.render.cloudinit import parse_seed_files, render_seed_files
from components.render.scripts import SCRIPTS_DIR

pytestmark = pytest.mark.skipif(shutil.which("isoinfo") is None,
                                reason="needs isoinfo and mkisofs (Debian: genisoimage)")

USER_DATA = "#cloud-config\nssh_keys:\n  ed25519_private: secret-key\n"
META_DATA = "instance-id: dev-worker1\nlocal-hostname: worker1\n"
NETWORK_CONFIG = "version: 2\nethernets: {}\n"
SEED_NAME = "dev-worker1-seed"


def build(stdin: str, cache: Path, name: str = SEED_NAME) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPTS_DIR / "local" / "build-seed-iso.sh")],
                          input=stdin, env={**os.environ, "SEED_NAME": name,
                                            "SEED_CACHE_DIR": str(cache)},
                          capture_output=True, text=True, timeout=60)


def remove(printed: str, name: str = SEED_NAME) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPTS_DIR / "local" / "remove-seed-iso.sh")],
                          env={**os.environ, "SEED_NAME": name,
                               "PULUMI_COMMAND_STDOUT": printed},
                          capture_output=True, text=True, timeout=60)


def iso_file(iso: Path, name: str) -> str:
    return subprocess.run(["isoinfo", "-R", "-i", str(iso), "-x", f"/{name}"],
                          capture_output=True, text=True, check=True).stdout


def test_the_seed_is_a_private_nocloud_image_of_the_three_documents(tmp_path: Path) -> None:
    result = build(render_seed_files(USER_DATA, META_DATA, NETWORK_CONFIG), tmp_path / "c")
    assert result.returncode == 0, result.stderr
    iso = Path(result.stdout.strip())
    assert iso.parent == tmp_path / "c" and iso.name.startswith(f"{SEED_NAME}-")
    assert iso.stat().st_mode & 0o777 == 0o600
    assert iso.parent.stat().st_mode & 0o777 == 0o700
    volume = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True,
                            text=True, check=True).stdout
    assert "Volume id: cidata" in volume
    assert iso_file(iso, "user-data") == USER_DATA
    assert iso_file(iso, "meta-data") == META_DATA
    assert iso_file(iso, "network-config") == NETWORK_CONFIG
    assert [p.name for p in iso.parent.iterdir()] == [iso.name]  # no work files left


def test_the_same_seed_is_built_once_and_a_new_one_replaces_it(tmp_path: Path) -> None:
    seed = render_seed_files(USER_DATA, META_DATA, NETWORK_CONFIG)
    first = Path(build(seed, tmp_path).stdout.strip())
    built = first.stat().st_mtime_ns
    again = build(seed, tmp_path)
    assert Path(again.stdout.strip()) == first and first.stat().st_mtime_ns == built
    other = build(render_seed_files(USER_DATA, META_DATA, NETWORK_CONFIG), tmp_path,
                  name="dev-worker2-seed")
    changed = build(render_seed_files(USER_DATA + "# new\n", META_DATA, NETWORK_CONFIG), tmp_path)
    assert changed.returncode == 0, changed.stderr
    # The node's old seed (holding its old keys) is gone; another node's is kept.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [Path(changed.stdout.strip()).name, Path(other.stdout.strip()).name])


@pytest.mark.parametrize(("stdin", "message"), [
    ("user-data dXNlcg==\nmeta-data bWV0YQ==\n", "network-config missing"),
    ("user-data dXNlcg==\nuser-data dXNlcg==\n", "user-data given twice"),
    ("vendor-data dXNlcg==\n", "unexpected seed file: vendor-data"),
    ("user-data not*base64\n", "user-data is not base64"),
    ("user-data dXNlcg== extra\n", "malformed line for user-data"),
])
def test_a_malformed_seed_is_refused_and_nothing_kept(tmp_path: Path, stdin: str,
                                                      message: str) -> None:
    result = build(stdin, tmp_path)
    assert result.returncode != 0 and message in result.stderr
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_a_seed_name_cannot_point_elsewhere(tmp_path: Path) -> None:
    result = build(render_seed_files("a", "b", "c"), tmp_path, name="../etc/x")
    assert result.returncode != 0 and "bad SEED_NAME" in result.stderr


def test_delete_removes_the_printed_seed_and_refuses_anything_else(tmp_path: Path) -> None:
    printed = build(render_seed_files(USER_DATA, META_DATA, NETWORK_CONFIG), tmp_path).stdout
    bystander = tmp_path / "notes.txt"
    bystander.write_text("keep")
    refused = remove(str(bystander))
    assert refused.returncode != 0 and "refusing to remove" in refused.stderr
    assert bystander.exists()
    assert remove(printed, name="dev-worker2-seed").returncode != 0
    removed = remove(printed)
    assert removed.returncode == 0, removed.stderr
    assert not Path(printed.strip()).exists()
    assert remove(printed).returncode == 0  # already gone: nothing to do


def test_seed_files_round_trip() -> None:
    assert parse_seed_files(render_seed_files(USER_DATA, META_DATA, NETWORK_CONFIG)) == {
        "user-data": USER_DATA, "meta-data": META_DATA, "network-config": NETWORK_CONFIG}
