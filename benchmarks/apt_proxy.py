"""A caching HTTP proxy of Debian's archive on the host's loopback, for guests under qemu.

A qemu user-mode guest reaches the host's 127.0.0.1 as 10.0.2.2 and nothing else, so its apt
sources point here (``http://10.0.2.2:PORT/debian`` and ``.../debian-security``). Each GET
under ``/debian/`` or ``/debian-security/`` is served from the cache directory; a miss is
fetched on the host from the upstream archive, stored, then served. Files under ``pool/`` and
``by-hash/`` never change under their name and are fetched once for good. The other index
files under ``dists/`` (InRelease, Release) are replaced in place upstream, and the security
archive's expire within a week (``Valid-Until``), so each proxy fetches those again the first
time it is asked for them and serves that copy from then on: one warm-up pass per run brings
the cache up to date, and the boots measured after it touch the internet no more.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tests.vm.releases import serving

UPSTREAM = "http://deb.debian.org"
ARCHIVES = ("debian", "debian-security")
DEFAULT_CACHE = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                 / "sandboxed-k8s" / "apt-proxy")
FETCH_TIMEOUT_S = 120.0


def archive_path(request_path: str) -> PurePosixPath | None:
    """The file a request names, relative to the archive root (``debian/pool/...``), or None
    when it is outside the two archives or not a plain path to a file."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(request_path).path)
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "" or parts[1] not in ARCHIVES:
        return None
    if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts[1:]):
        return None
    return PurePosixPath(*parts[1:])


def changes_in_place(path: PurePosixPath) -> bool:
    """Index files under dists/ outside by-hash/: upstream replaces them under the same name."""
    return "dists" in path.parts and "by-hash" not in path.parts


@dataclass
class ProxyCounts:
    """What the proxy did: files served from the cache and fetched from upstream."""

    served: int = 0
    fetched: int = 0
    fetched_bytes: int = 0
    refused: int = 0
    failed: int = 0


class AptProxy(http.server.ThreadingHTTPServer):
    """Serve the archive cache on ``host`` (loopback; an ephemeral port unless given)."""

    daemon_threads = True

    def __init__(self, cache_dir: Path = DEFAULT_CACHE, *, upstream: str = UPSTREAM,
                 host: str = "127.0.0.1", port: int = 0,
                 timeout: float = FETCH_TIMEOUT_S) -> None:
        super().__init__((host, port), _Handler)
        self.cache_dir = cache_dir
        self.upstream = upstream.rstrip("/")
        self.fetch_timeout = timeout
        self.lock = threading.Lock()
        self.counts = ProxyCounts()
        self._refreshed: set[PurePosixPath] = set()
        cache_dir.mkdir(parents=True, exist_ok=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def snapshot(self) -> ProxyCounts:
        with self.lock:
            return ProxyCounts(**vars(self.counts))

    def file_for(self, path: PurePosixPath) -> Path | None:
        """The cached file for `path`, fetched from upstream first when it is missing (or,
        for an index that changes in place, not yet fetched by this proxy). None: upstream
        has no such file, or it failed and nothing is cached."""
        cached = self.cache_dir / path
        with self.lock:
            fresh = changes_in_place(path) and path not in self._refreshed
        if cached.is_file() and not fresh:
            return cached
        try:
            size = self._fetch(path, cached)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None  # apt asks for files that may not exist (InRelease, then Release)
            return self._fallback(cached)
        except (OSError, urllib.error.URLError):
            return self._fallback(cached)
        with self.lock:
            self._refreshed.add(path)
            self.counts.fetched += 1
            self.counts.fetched_bytes += size
        return cached

    def _fetch(self, path: PurePosixPath, cached: Path) -> int:
        url = f"{self.upstream}/{urllib.parse.quote(str(path))}"
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the target and renamed: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".fetch-")
        try:
            with os.fdopen(fd, "wb") as out, \
                    urllib.request.urlopen(url, timeout=self.fetch_timeout) as response:
                shutil.copyfileobj(response, out, 1 << 20)
                size = out.tell()
            os.replace(tmp, cached)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return size

    def _fallback(self, cached: Path) -> Path | None:
        with self.lock:
            self.counts.failed += 1
        return cached if cached.is_file() else None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: apt pipelines its requests on one connection
    server: AptProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = archive_path(self.path)
        if path is None:
            with self.server.lock:
                self.server.counts.refused += 1
            self._empty(403)
            return
        file = self.server.file_for(path)
        if file is None:
            self._empty(404)
            return
        with file.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            shutil.copyfileobj(f, self.wfile, 1 << 20)
        with self.server.lock:
            self.server.counts.served += 1

    def _empty(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


def serve(cache_dir: Path = DEFAULT_CACHE, *, upstream: str = UPSTREAM,
          host: str = "127.0.0.1") -> contextlib.AbstractContextManager[AptProxy]:
    """Run an AptProxy on `host` (an ephemeral port) until the block ends."""
    return serving(AptProxy(cache_dir, upstream=upstream, host=host))
