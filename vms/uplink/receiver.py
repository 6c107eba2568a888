"""A reference provincial receiver: accepts Table 2/3/4 posts and checks every field.

Used by the tests, the benchmark and for trying a configuration by hand.  It is a real
HTTP server (stdlib, one thread per request) on 127.0.0.1 whose behaviour can be switched
to simulate a receiver in trouble: ``ok`` (200), ``error`` (500) or ``hang`` (never
answers until the mode changes).  Not started, it refuses connections.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import tables
from .validation import parse_body, validate, validate_table4

__all__ = ["Received", "Receiver", "free_port", "parse_body", "validate", "validate_table4"]


@dataclass
class Received:
    path: str
    fields: dict[str, str]
    image: bytes | None
    errors: list[str]
    content_type: str
    at: float = field(default_factory=time.monotonic)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Switchable test receiver; ``received`` holds the posts answered with 200."""

    def __init__(
        self,
        port: int = 0,
        validate_images: bool = True,
        keep: bool = True,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.tls = tls  # (certificate, key) PEM files: serve HTTPS
        self.keep = keep  # False: count only, for long runs (the CLI, benchmarks)
        self.accepted = 0
        self.mode = "ok"
        self.validate_images = validate_images
        self.received: list[Received] = []
        self.rejected = 0
        self.hung = 0
        self._lock = threading.Lock()
        self._mode_changed = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.on_receive: Callable[[Received], None] | None = None

    def url(self, table: str = "table4") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{table}"

    def set_mode(self, mode: str) -> None:
        with self._lock:
            self.mode = mode
            self._mode_changed.notify_all()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                receiver._answer(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._lock:
            deadline = time.monotonic() + 60
            while self.mode == "hang" and time.monotonic() < deadline:
                self.hung += 1
                self._mode_changed.wait(0.5)
            mode = self.mode
        if mode != "ok":
            with self._lock:
                self.rejected += 1
            self._reply(handler, 500, b'{"error":"simulated outage"}')
            return
        ctype = handler.headers.get("Content-Type", "")
        try:
            fields, image = parse_body(ctype, body)
            errors = validate(handler.path, fields, image) if self.validate_images else []
        except (ValueError, UnicodeDecodeError) as exc:
            fields, image, errors = {}, None, [f"unparsable body: {exc}"]
        record = Received(handler.path, fields, image, errors, ctype)
        with self._lock:
            self.accepted += 1
            if self.keep:
                self.received.append(record)
        if self.on_receive is not None:
            self.on_receive(record)
        self._reply(handler, 400 if errors else 200, json.dumps({"errors": errors}).encode())

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, code: int, body: bytes) -> None:
        try:
            handler.send_response(code)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout): nothing to tell it

    def stop(self) -> None:
        self.set_mode("ok")  # release hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def main(argv: list[str] | None = None) -> None:
    """``python -m vms.uplink.receiver --port N``: serve until killed; with ``--arrivals``
    print one JSON line per accepted record (ALARM_ID, ALARM_STATUS, monotonic time)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="reference Table 2/3/4 receiver on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-validate", action="store_true", help="skip field/image checks")
    parser.add_argument("--arrivals", action="store_true", help="print each accepted record")
    args = parser.parse_args(argv)
    receiver = Receiver(args.port, validate_images=not args.no_validate, keep=False)
    out_lock = threading.Lock()
    if args.arrivals:

        def report(r: Received) -> None:
            line = {
                "path": r.path,
                "ALARM_ID": r.fields.get(tables.ALARM_ID, ""),
                "ALARM_STATUS": r.fields.get(tables.ALARM_STATUS, ""),
                "t": time.monotonic(),
                "errors": r.errors,
            }
            with out_lock:
                sys.stdout.write(json.dumps(line) + "\n")
                sys.stdout.flush()

        receiver.on_receive = report
    receiver.start()
    sys.stderr.write(f"receiver listening on http://127.0.0.1:{receiver.port}/table4\n")
    sys.stderr.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
