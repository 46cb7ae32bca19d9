"""Fixtures shared by the test layers: running node scripts, a local release server."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from components.render.scripts import SCRIPTS_DIR


def run_script(name: str, env: Mapping[str, str], *, check: bool = False
               ) -> subprocess.CompletedProcess[str]:
    """Run a node script from the checkout (it sources lib.sh next to it)."""
    result = subprocess.run(["bash", str(SCRIPTS_DIR / name)], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{name} failed ({result.returncode}):\n{result.stderr}")
    return result


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--omit-object", action="append", metavar="'KIND [NAMESPACE/]NAME'",
        help="tests/apiserver: leave this Kubernetes object of the graph out (to see which "
             "cases a guardrail object carries); repeatable")


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on 127.0.0.1 serving a temporary directory."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path
