"""A real HTTP server standing in for the plugin daemon in tests.

Owns: ``FixtureDaemon``: a ``ThreadingHTTPServer`` on a free local port that checks ``X-Api-Key`` like the
daemon (HTTP 401 + the daemon's exact envelope), records every request, and answers each route with a
registered ``Reply``: a JSON body, raw bytes, or an SSE stream written with chunked transfer encoding
(optionally slow, optionally cut off mid-stream). Unknown routes get the daemon's NoRoute 404 body.
Must not: implement daemon logic; tests decide every answer.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

UNAUTHORIZED_BODY = (
    b'{"code":-401,"message":"{\\"message\\":\\"unauthorized\\",\\"error_type\\":'
    b'\\"PluginDaemonUnauthorizedError\\",\\"args\\":null}","data":null}'
)
NO_ROUTE_BODY = b'{"code":"not_found","message":"route not found"}'


def success_body(data: Any) -> bytes:
    """``{"code":0,"message":"success","data":...}`` in the daemon's compact form."""
    return json.dumps({"code": 0, "message": "success", "data": data}, separators=(",", ":")).encode()


def error_body(code: int, error_type: str, message: str) -> bytes:
    """An error envelope: ``message`` holds the JSON error object ``{message, error_type, args}``."""
    inner = json.dumps({"message": message, "error_type": error_type, "args": None}, separators=(",", ":"))
    return json.dumps({"code": code, "message": inner, "data": None}, separators=(",", ":")).encode()


def sse_line(envelope: bytes) -> bytes:
    return b"data: " + envelope + b"\n\n"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    # For SSE: each item is written as one chunk, after ``delay`` seconds.
    stream: list[bytes] | None = None
    delay: float = 0.0
    # Abort the connection after writing the stream without the terminating chunk.
    cut_off: bool = False


@dataclass
class RecordedRequest:
    method: str
    path: str
    raw_path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[RecordedRequest], Reply]


@dataclass
class FixtureDaemon:
    api_key: str = "plugin-api-key"
    routes: dict[tuple[str, str], Responder] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    # Answers requests that match no route (instead of the daemon's NoRoute 404), when set.
    fallback: Responder | None = None
    # Seconds to wait before answering any request.
    global_delay: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        fixture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=split.path,
                    raw_path=self.path,
                    query=parse_qs(split.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with fixture._lock:
                    fixture.requests.append(request)
                reply = fixture._reply_for(request)
                self._write(reply)

            def _write(self, reply: Reply) -> None:
                self.send_response(reply.status)
                if reply.stream is None:
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if reply.delay:
                        time.sleep(reply.delay)
                    self.wfile.write(reply.body)
                    return
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                try:
                    for item in reply.stream:
                        if reply.delay:
                            time.sleep(reply.delay)
                        self.wfile.write(f"{len(item):x}\r\n".encode() + item + b"\r\n")
                        self.wfile.flush()
                    if reply.cut_off:
                        self.close_connection = True
                        return
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = _handle
            do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "FixtureDaemon":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    # ------------------------------------------------------------------ routes

    def on(self, method: str, path: str, reply: Reply | Responder) -> None:
        """Answer ``method path`` (path without query) with a fixed ``Reply`` or a function of the request."""
        if isinstance(reply, Reply):
            fixed = reply

            def responder(_request: RecordedRequest) -> Reply:
                return fixed

            self.routes[(method.upper(), path)] = responder
        else:
            self.routes[(method.upper(), path)] = reply

    def json(self, method: str, path: str, data: Any, status: int = 200) -> None:
        self.on(method, path, Reply(status=status, body=success_body(data)))

    def error(self, method: str, path: str, code: int, error_type: str, message: str, status: int = 200) -> None:
        self.on(method, path, Reply(status=status, body=error_body(code, error_type, message)))

    def sse(self, method: str, path: str, lines: list[bytes], delay: float = 0.0, cut_off: bool = False) -> None:
        self.on(method, path, Reply(stream=lines, delay=delay, cut_off=cut_off))

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _reply_for(self, request: RecordedRequest) -> Reply:
        if request.path != "/health/check" and request.headers.get("x-api-key") != self.api_key:
            return Reply(status=401, body=UNAUTHORIZED_BODY)
        responder = self.routes.get((request.method, request.path))
        if responder is None:
            for (method, path), candidate in self.routes.items():
                if method == request.method and path.endswith("*") and request.path.startswith(path[:-1]):
                    responder = candidate
                    break
        if responder is None:
            responder = self.fallback
        if responder is None:
            return Reply(status=404, body=NO_ROUTE_BODY)
        reply = responder(request)
        if self.global_delay:
            time.sleep(self.global_delay)
        return reply


def chunk_text(text: str) -> bytes:
    """One SSE line carrying a ``text`` tool message."""
    return sse_line(success_body({"type": "text", "message": {"text": text}, "meta": None}))
