"""fetch-base-image.sh: the base image is used only when it matches the stack's checksum."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from components.render.scripts import SCRIPTS_DIR

IMAGE = b"QFI\xfb" + b"\0" * 4092  # a qcow2 header is all it takes


def fetch(source: str, checksum: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPTS_DIR / "local" / "fetch-base-image.sh")],
                          env={**os.environ, "IMAGE_SOURCE": source, "IMAGE_CHECKSUM": checksum,
                               "IMAGE_CACHE_DIR": str(cache)},
                          capture_output=True, text=True, timeout=60)


def test_a_matching_image_is_cached_and_its_path_printed(
        release_server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = release_server
    (www / "debian.qcow2").write_bytes(IMAGE)
    checksum = "sha512:" + hashlib.sha512(IMAGE).hexdigest()
    first = fetch(f"{url}/debian.qcow2", checksum, tmp_path / "cache")
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    assert path.read_bytes() == IMAGE
    assert path.stat().st_mode & 0o077 == 0
    # A second run needs no source at all: the verified copy is reused.
    (www / "debian.qcow2").unlink()
    second = fetch(f"{url}/debian.qcow2", checksum, tmp_path / "cache")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout


def test_a_mismatching_image_is_refused_and_nothing_kept(
        release_server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = release_server
    (www / "debian.qcow2").write_bytes(IMAGE + b"tampered")
    checksum = "sha256:" + hashlib.sha256(IMAGE).hexdigest()
    result = fetch(f"{url}/debian.qcow2", checksum, tmp_path / "cache")
    assert result.returncode != 0
    assert "refusing it" in result.stderr
    assert result.stdout == ""
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_cached_copy_that_changed_is_fetched_again(tmp_path: Path) -> None:
    source = tmp_path / "debian.qcow2"
    source.write_bytes(IMAGE)
    checksum = "sha256:" + hashlib.sha256(IMAGE).hexdigest()
    path = Path(fetch(str(source), checksum, tmp_path / "cache").stdout.strip())
    path.write_bytes(b"corrupted")
    again = fetch(f"file://{source}", checksum, tmp_path / "cache")
    assert again.returncode == 0, again.stderr
    assert path.read_bytes() == IMAGE


def test_a_malformed_checksum_is_refused(tmp_path: Path) -> None:
    result = fetch(str(tmp_path / "x"), "md5:abc", tmp_path / "cache")
    assert result.returncode != 0
    assert "unsupported checksum algorithm" in result.stderr
