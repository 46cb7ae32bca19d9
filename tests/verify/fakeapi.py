"""A loopback HTTP server that answers as a kube-apiserver would, from a table: enough to drive
the real Kubernetes client in `verify.client` (URLs, query parameters, bodies, Status errors)
without a cluster. The real server's answers are checked in tests/apiserver."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "s3cr3t-bearer-token"
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = {"major": "1", "minor": "34", "gitVersion": "v1.34.2"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    header = bytes([0x80 | opcode, size]) if size < 126 else \
        bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
    return header + payload


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A `Status` object as the API server sends with an error."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout tests) is expected


class FakeApiServer:
    def __init__(self) -> None:
        # (method, path) -> answers, served in turn; the last one repeats.
        self.answers: dict[tuple[str, str], list[tuple[int, Any]]] = {
            ("GET", "/version/"): [(200, VERSION)]}
        self.requests: list[Request] = []
        self.delays: dict[tuple[str, str], float] = {}  # seconds before answering
        # exec path -> what the websocket sends: (channel, text) frames, then a close
        self.streams: dict[str, list[tuple[int, str]]] = {}
        self._http = _Quiet(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"

    def answer(self, method: str, path: str, *answers: tuple[int, Any]) -> None:
        self.answers[(method, path)] = list(answers)

    def _reply(self, method: str, path: str) -> tuple[int, Any]:
        queue = self.answers.get((method, path))
        if not queue:
            return 404, status(404, "NotFound", f"{path} not found")
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                server.requests.append(Request(
                    self.command, url.path, parse_qs(url.query),
                    json.loads(raw) if raw else None, self.headers.get("Authorization", "")))
                time.sleep(server.delays.get((self.command, url.path), 0))
                if self.headers.get("Upgrade", "").lower() == "websocket" \
                        and url.path in server.streams:
                    self._stream(server.streams[url.path])
                    return
                code, body = server._reply(self.command, url.path)
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str)
                                 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, frames: list[tuple[int, str]]) -> None:
                """The server side of a websocket exec (RFC 6455, channel.k8s.io framing):
                one binary frame per (channel, text), unmasked as servers send them."""
                key = self.headers["Sec-WebSocket-Key"] + WEBSOCKET_GUID
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept",
                                 base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
                self.send_header("Sec-WebSocket-Protocol",
                                 self.headers.get("Sec-WebSocket-Protocol", ""))
                self.end_headers()
                for channel, text in frames:
                    self.wfile.write(_frame(0x2, bytes([channel]) + text.encode()))
                self.wfile.write(_frame(0x8, (1000).to_bytes(2, "big")))
                self.wfile.flush()
                self.close_connection = True

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "admin"}}]}))
        return path

    def last(self, method: str, path: str) -> Request:
        return [r for r in self.requests if (r.method, r.path) == (method, path)][-1]

    @contextmanager
    def running(self) -> Iterator[FakeApiServer]:
        thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._http.shutdown()
            self._http.server_close()
            thread.join()
