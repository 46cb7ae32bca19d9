"""Tiny OCI image archives built from Debian's busybox-static, without any registry.

`build_busybox_archive` writes an OCI image-layout tar (oci-layout, index.json, blobs/) that
`ctr images import` accepts on containerd 1.6 and 2.x. The single layer holds /bin/busybox
plus the applet symlinks the tests use. The same layer serves as the pod sandbox ("pause")
image, with a shell loop as entrypoint that exits on SIGTERM like the real pause.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "sleep", "uname", "dmesg", "cat", "echo", "true", "ls", "id")
PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"


@dataclass(frozen=True)
class ImageArchive:
    path: Path
    ref: str
    manifest_digest: str


def _blob(layout: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _add_bytes(layout, f"blobs/sha256/{digest.removeprefix('sha256:')}", data)
    return digest, len(data)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    archive.addfile(info, io.BytesIO(data))


def _add_dir(archive: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    archive.addfile(info)


def _busybox_layer(busybox: Path, extra_files: Mapping[str, bytes]) -> bytes:
    """An uncompressed layer tar: /bin/busybox, applet symlinks, the usual empty dirs, and
    `extra_files` (path in the image -> content, executable)."""
    if not busybox.is_file():
        raise FileNotFoundError(f"{busybox} missing: apt-get install busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "var", "root"):
            _add_dir(layer, d)
        _add_bytes(layer, "bin/busybox", busybox.read_bytes(), mode=0o755)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            layer.addfile(link)
        _add_bytes(layer, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        _add_bytes(layer, "etc/group", b"root:x:0:\n")
        for path, content in sorted(extra_files.items()):
            _add_bytes(layer, path.lstrip("/"), content, mode=0o755)
    return buf.getvalue()


def build_busybox_archive(
    dest: Path,
    ref: str,
    entrypoint: list[str] | None = None,
    busybox: Path = BUSYBOX,
    extra_files: Mapping[str, bytes] | None = None,
) -> ImageArchive:
    """Write an OCI layout tar for `ref` (a full reference such as "docker.io/library/x:1")."""
    layer = _busybox_layer(busybox, extra_files or {})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Entrypoint": entrypoint or ["/bin/sh"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    with tarfile.open(dest, mode="w", format=tarfile.PAX_FORMAT) as out:
        _add_dir(out, "blobs")
        _add_dir(out, "blobs/sha256")
        layer_digest, layer_size = _blob(out, layer)
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest, config_size = _blob(out, config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": layer_size,
                }
            ],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest, manifest_size = _blob(out, manifest_bytes)
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1],
                    },
                }
            ],
        }
        _add_bytes(out, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add_bytes(out, "index.json", json.dumps(index, sort_keys=True).encode())
    return ImageArchive(path=dest, ref=ref, manifest_digest=manifest_digest)


def pause_entrypoint() -> list[str]:
    return ["/bin/sh", "-c", PAUSE_SCRIPT]
