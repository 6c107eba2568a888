"""Request limits: body size and time, requests at once per user and in all.

Handlers run in a thread pool and take a database connection each, so without a
bound one user's 200 parallel requests took every pooled connection (117 × 500,
``/healthz`` 29.8 s).  Here, before any handler runs: a caller (the JWT's user,
else the client address) has at most ``server.max_requests_per_user`` requests in
flight (more → 429), the node ``server.max_requests`` (more → 503), sized under the
database pool so components and other users always find a connection.  Bodies are
capped at ``server.max_body_bytes`` (413) and must arrive within
``server.body_timeout_s`` (408).  Static files, ``/`` and ``/healthz`` take no
database connection and are not limited; WebSockets have limits of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
import jwt

from vms.logging import get_logger, worth_logging

from .security import decode_token

log = get_logger("api.limits")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

UNLIMITED_PATHS = frozenset({"/", "/healthz"})
UNLIMITED_PREFIXES = ("/static/",)
THREAD_HEADROOM = 8  # worker threads beyond max_requests (sync dependencies, file responses)
# An over-size body up to this is read and thrown away before the 413: a client that is
# still sending when the connection closes gets a reset instead of the answer.  Beyond
# it (or after DRAIN_S) the connection is closed unread.
DRAIN_MAX_BYTES = 32 * 1024 * 1024
DRAIN_S = 10.0


class BodyRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class LimitStats:
    too_many_per_user: int = 0  # 429s
    busy: int = 0  # 503s: the node's limit
    body_too_large: int = 0
    body_timeouts: int = 0


class RequestLimits:
    """Pure ASGI middleware (it never buffers a body nor wraps a response)."""

    def __init__(
        self,
        app: App,
        *,
        jwt_secret: str,
        max_body_bytes: int,
        body_timeout_s: float,
        max_requests_per_user: int,
        max_requests: int,
    ) -> None:
        self.app = app
        self.jwt_secret = jwt_secret
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.max_per_user = max_requests_per_user
        self.max_total = max_requests
        self.in_flight: dict[str, int] = {}
        self.total = 0
        self.stats = LimitStats()
        self._threads_sized = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in UNLIMITED_PATHS
            or path.startswith(UNLIMITED_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        if not self._threads_sized:
            self._size_threads()
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            self.stats.body_too_large += 1
            if int(declared) <= DRAIN_MAX_BYTES:
                await _discard(receive, DRAIN_MAX_BYTES, min(DRAIN_S, self.body_timeout_s))
            await _reply(send, 413, f"request body over {self.max_body_bytes} bytes")
            return
        key = self.principal(scope)
        mine = self.in_flight.get(key, 0)
        if mine >= self.max_per_user:
            self.stats.too_many_per_user += 1
            _log_sparse("too many requests at once from one caller", self.stats.too_many_per_user)
            await _reply(send, 429, "too many requests at once; retry shortly", retry_after=1)
            return
        if self.total >= self.max_total:
            self.stats.busy += 1
            _log_sparse("node busy: requests refused", self.stats.busy)
            await _reply(send, 503, "server busy; retry shortly", retry_after=1)
            return
        self.in_flight[key] = mine + 1
        self.total += 1
        refused: list[BodyRefused] = []  # set by the body guard; the app may wrap the error
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:  # whatever the app answers (FastAPI makes it a 400): ours instead
                if not started:
                    started = True
                    await _reply(send, refused[0].status, refused[0].detail)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, self._body_guard(receive, refused), guarded_send)
        except BodyRefused:
            if started:
                raise
        finally:
            if refused and not started:
                if refused[0].status == 413:  # let the client finish sending: see DRAIN_MAX_BYTES
                    budget = DRAIN_MAX_BYTES - self.max_body_bytes
                    await _discard(receive, budget, min(DRAIN_S, self.body_timeout_s))
                await _reply(send, refused[0].status, refused[0].detail)
            self.total -= 1
            left = self.in_flight[key] - 1
            if left:
                self.in_flight[key] = left
            else:
                del self.in_flight[key]

    def principal(self, scope: Scope) -> str:
        """Who the limit counts against: a valid token's user, else the client's address."""
        token = ""
        auth = _header(scope, b"authorization")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        elif b"token=" in scope.get("query_string", b""):
            values = parse_qs(scope["query_string"].decode("latin-1")).get("token")
            token = values[0] if values else ""
        if token:
            try:
                return f"user:{decode_token(self.jwt_secret, token)['sub']}"
            except (jwt.InvalidTokenError, KeyError):
                pass  # the handler answers 401; until then it counts as its address
        client = scope.get("client")
        return f"ip:{client[0] if client else ''}"

    def _body_guard(self, receive: Receive, refused: list[BodyRefused]) -> Receive:
        deadline = time.monotonic() + self.body_timeout_s
        size = 0

        def refuse(status: int, detail: str) -> BodyRefused:
            exc = BodyRefused(status, detail)
            if not refused:
                refused.append(exc)
            return exc

        async def guarded() -> Message:
            nonlocal size
            if refused:
                raise refused[0]
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.001))
            except TimeoutError:
                self.stats.body_timeouts += 1
                raise refuse(408, "request body not received in time") from None
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_body_bytes:
                    self.stats.body_too_large += 1
                    raise refuse(413, f"request body over {self.max_body_bytes} bytes")
            return message

        return guarded

    def _size_threads(self) -> None:
        """Enough worker threads for ``max_requests`` handlers, so none waits for a thread."""
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, self.max_total + THREAD_HEADROOM)
        self._threads_sized = True


async def _discard(receive: Receive, budget: int, timeout_s: float) -> None:
    """Read and drop what is left of a request body: at most ``budget`` bytes, ``timeout_s``."""
    seen = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while seen <= budget:
                message = await receive()
                if message["type"] != "http.request":
                    return
                seen += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


async def _reply(send: Send, status: int, detail: str, retry_after: int | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if retry_after is not None:
        headers.append((b"retry-after", b"%d" % retry_after))
    if status in (408, 413):
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log_sparse(what: str, count: int) -> None:
    if worth_logging(count):
        log.warning(what, refused=count)
