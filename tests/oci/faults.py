"""A misbehaving registry for fault-injection tests: a real HTTP server on loopback whose answers a test
scripts (status storms, Retry-After, slowness, oversized or tampered content, a bearer token service)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.infra import LoopbackHTTPServer


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class FaultServer:
    def __init__(self, script: Callable[[Seen], Answer]) -> None:
        self.script = script
        self.requests: list[Seen] = []
        self.host = ""

    def count(self, path_part: str = "") -> int:
        return sum(1 for r in self.requests if path_part in r.path)


@contextmanager
def fault_server(script: Callable[[Seen], Answer]) -> Iterator[FaultServer]:
    server = FaultServer(script)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
            server.requests.append(seen)
            answer = server.script(seen)
            if answer.delay:
                time.sleep(answer.delay)
            try:
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_HEAD = do_PUT = do_POST = _answer

    httpd = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
    server.host = f"127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
