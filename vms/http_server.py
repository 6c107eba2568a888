"""The HTTP listener: uvicorn with guard rails against idle, slow and too many clients.

uvicorn closes a keep-alive connection only after a response, so a connection that
never sends a request (or trickles its headers) stays open forever, and every one
holds a file descriptor: 1,100 of them took the API down at a 1,024 fd limit.  The
protocol here adds what uvicorn lacks: a cap on open connections (the longest-idle
one makes room for a new one, so idle floods cannot lock users out), a deadline for a
request's headers and a byte cap on them, and a deadline for a client that stops
reading its response.  Request-level limits (body size, per-user concurrency) are in
:mod:`api.limits`.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sip.transport import fd_cap
from vms.config import ServerSettings
from vms.logging import get_logger

log = get_logger("vms.http")

MAX_HEADER_BYTES = 64 * 1024  # a request's line and headers; more → 431 and closed


def connection_cap(configured: int) -> int:
    """``server.max_connections``, never more than a quarter of the open-file limit (the
    share SIP/TCP gets too: :func:`sip.transport.fd_cap`)."""
    cap = fd_cap(configured)
    if cap < configured:
        log.warning(
            "http connection cap lowered to a quarter of the open-file limit",
            configured=configured,
            cap=cap,
            fd_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        )
    return cap


@dataclass
class ConnectionGuard:
    """Open HTTP connections of one listener, and what the guard did to them."""

    max_connections: int
    header_timeout_s: float
    send_timeout_s: float
    open: set[GuardedHttpProtocol] = field(default_factory=set)
    evicted: int = 0  # idle connections closed to make room for a new one
    refused: int = 0  # new connections closed: all open ones were busy
    header_timeouts: int = 0
    header_too_large: int = 0
    send_timeouts: int = 0

    def admit(self, proto: GuardedHttpProtocol, connections: int) -> bool:
        """Room for ``proto``? ``connections``: all open ones (WebSockets included)."""
        if connections < self.max_connections:
            return True
        idle = [p for p in self.open if not p.busy]
        if not idle:
            self.refused += 1
            return False
        oldest = min(idle, key=lambda p: p.idle_since)
        self.evicted += 1
        oldest.drop("evicted: the connection cap is reached", graceful=True)
        return True

    def as_dict(self) -> dict[str, int]:
        return {
            "open": len(self.open),
            "max_connections": self.max_connections,
            "evicted": self.evicted,
            "refused": self.refused,
            "header_timeouts": self.header_timeouts,
            "header_too_large": self.header_too_large,
            "send_timeouts": self.send_timeouts,
        }


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guard's cap and deadlines."""

    guard: ConnectionGuard  # set on the subclass :func:`protocol_class` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.busy = False  # a request is being handled (headers complete, response not done)
        self.idle_since = time.monotonic()
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.guard.admit(self, len(self.server_state.connections)):
            transport.abort()  # every open connection is busy: this one waits for nothing
            return
        super().connection_made(transport)
        self.guard.open.add(self)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self.guard.header_too_large += 1
                self._reply_and_close(b"431 Request Header Fields Too Large")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self.busy = True
        self._header_bytes = 0
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.busy = self.cycle is not None and not self.cycle.response_complete  # pipelined
        self.idle_since = time.monotonic()
        if not self.busy and not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers have the same deadline

    def handle_websocket_upgrade(self) -> None:
        self._forget()  # the WebSocket protocol owns the connection now (pings keep it honest)
        super().handle_websocket_upgrade()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.guard.send_timeout_s, self._send_timeout)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        if self.transport is not None:
            super().connection_lost(exc)

    # --- the guard's actions -------------------------------------------------------------

    def drop(self, why: str, graceful: bool = False) -> None:
        """Close now; ``graceful``: with a FIN (an idle keep-alive client sees it as EOF and
        opens a new connection), else a reset (a client that reads nothing never drains)."""
        log.debug("http connection closed", reason=why, client=_client(self))
        self._forget()
        if graceful:
            self.transport.close()
        else:
            self.transport.abort()

    def _forget(self) -> None:
        self.guard.open.discard(self)
        self._cancel_header_timer()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.guard.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.busy and not self.transport.is_closing():
            self.guard.header_timeouts += 1
            if self._header_bytes:  # a request had begun: tell the client why
                self._reply_and_close(b"408 Request Timeout")
            else:
                self.drop("no request in time", graceful=True)

    def _send_timeout(self) -> None:
        self._send_timer = None
        self.guard.send_timeouts += 1
        self.drop("the client stopped reading its response")

    def _reply_and_close(self, status: bytes) -> None:
        self._forget()
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        )
        self.transport.close()


def _client(proto: GuardedHttpProtocol) -> str:
    client = proto.client
    return f"{client[0]}:{client[1]}" if client else ""


def protocol_class(guard: ConnectionGuard) -> type[GuardedHttpProtocol]:
    """A protocol class bound to one listener's guard (uvicorn instantiates it per connection)."""
    return type("GuardedHttp", (GuardedHttpProtocol,), {"guard": guard})


def uvicorn_config(app: Any, settings: ServerSettings, **extra: Any) -> uvicorn.Config:
    """uvicorn's config for the API: the guarded protocol and the keep-alive timeout."""
    guard = ConnectionGuard(
        connection_cap(settings.max_connections),
        settings.header_timeout_s,
        settings.send_timeout_s,
    )
    if settings.tls_cert_file:  # HTTPS: TLS 1.2 at least, the certificate from settings
        extra.setdefault("ssl_certfile", settings.tls_cert_file)
        extra.setdefault("ssl_keyfile", settings.tls_key_file)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_class(guard),
        timeout_keep_alive=settings.keepalive_timeout_s,  # type: ignore[arg-type] - a float works
        log_config=None,
        access_log=False,
        lifespan="off",
        **extra,
    )
    config.guard = guard  # type: ignore[attr-defined] - read by the app's /healthz
    return config
