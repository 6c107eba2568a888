"""The audit middleware: every change made through the API, every login, export and download.

One place instead of a call in each handler, so a new route is audited without anyone
remembering to: every POST/PUT/PATCH/DELETE by an authenticated caller (whatever its
outcome: a refused change is as telling as a made one), every GET of an export or a
download, and whatever a handler marks with ``note`` (logins, sign-outs).  The entry is
written before the response starts, so a client that saw its change answered finds it in
the trail.  Sensor pushes from gateways are machine traffic at up to one request a second
per enterprise and carry no decision: they are not audited (their rows are the record), nor
are the tables the level below posts to the intake.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread
from fastapi import Request

from storage.audit_models import AuditRecord, append
from storage.db import Database
from vms.logging import get_logger, worth_logging

log = get_logger("api.audit")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# GETs that take data away from the node: exports, downloads, printable reports.
EXPORT_SUFFIXES = (".csv", ".mp4", "/file", "/print")
# Gateway sensor pushes and the tables posted from the level below: machine data, no decision
# (their rows are the record).
NOT_AUDITED_PREFIXES = ("/api/ingest/", "/api/intake/")
BODY_KEEP_BYTES = 16 * 1024  # enough for any settings body; bigger uploads are summarised
VALUE_KEEP_CHARS = 200
SECRET_KEYS = re.compile(r"pass|secret|token|key$|_key|credential", re.IGNORECASE)


def note(request: Request, **fields: Any) -> None:
    """Tell the middleware what to record for this request (login: who tried, outcome)."""
    request.state.audit = {**getattr(request.state, "audit", {}), **fields}


def _redact(value: Any, depth: int = 0) -> Any:
    """The body as a reader of the trail needs it: values cut short, secrets never kept."""
    if isinstance(value, dict):
        if depth > 4:
            return "…"
        return {
            str(k): ("***" if SECRET_KEYS.search(str(k)) else _redact(v, depth + 1))
            for k, v in list(value.items())[:50]
        }
    if isinstance(value, list):
        return [_redact(v, depth + 1) for v in value[:20]] + (["…"] if len(value) > 20 else [])
    if isinstance(value, str) and len(value) > VALUE_KEEP_CHARS:
        return value[:VALUE_KEEP_CHARS] + "…"
    return value


def _body_summary(body: bytes, truncated: bool, content_type: str) -> Any:
    if not body:
        return None
    if "json" in content_type and not truncated:
        try:
            return _redact(json.loads(body))
        except ValueError:
            return {"bytes": len(body), "json": "invalid"}
    return {"bytes": len(body) if not truncated else f">{BODY_KEEP_BYTES}", "type": content_type}


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403, 404):
        return "denied"
    if status >= 500:
        return "error"
    return "failed"


class AuditTrail:
    """Pure ASGI middleware (no response buffering): watches requests, writes entries."""

    def __init__(self, app: App, db: Database) -> None:
        self.app = app
        self.db = db
        self.failures = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(NOT_AUDITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # the dict request.state writes into, shared with handlers
        method = scope["method"]
        kept = bytearray()
        truncated = False

        async def tee_receive() -> Message:
            nonlocal truncated
            message = await receive()
            if message["type"] == "http.request" and method in MUTATING:
                chunk = message.get("body", b"")
                room = BODY_KEEP_BYTES - len(kept)
                if len(chunk) > room:
                    truncated = True
                kept.extend(chunk[: max(room, 0)])
            return message

        async def audit_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record = self._record(scope, method, message["status"], bytes(kept), truncated)
                if record is not None:
                    await anyio.to_thread.run_sync(self._write, record)
            await send(message)

        await self.app(scope, tee_receive, audit_send)

    def _record(
        self, scope: Scope, method: str, status: int, body: bytes, truncated: bool
    ) -> AuditRecord | None:
        state = scope.get("state") or {}
        noted: dict[str, Any] = dict(state.get("audit") or {})
        actor: dict[str, Any] | None = state.get("audit_actor")
        route = scope.get("route")
        template = getattr(route, "path", scope["path"])
        if not noted:
            if actor is None:
                return None  # unauthenticated: nothing was done, and floods must not fill the trail
            is_export = method == "GET" and template.endswith(EXPORT_SUFFIXES)
            if method not in MUTATING and not is_export:
                return None
        client = scope.get("client")
        detail: dict[str, Any] = {"status": status}
        if scope.get("query_string"):
            detail["query"] = scope["query_string"].decode("latin-1")[:500]
        headers = dict(scope.get("headers") or [])
        summary = _body_summary(
            body, truncated, headers.get(b"content-type", b"").decode("latin-1")
        )
        if summary is not None:
            detail["body"] = summary
        detail.update(noted.pop("detail", {}))
        fields: dict[str, Any] = {
            "action": f"{method} {template}",
            "client": client[0] if client else "",
            "target": scope["path"],
            "outcome": _outcome(status),
            **(actor or {}),
            **noted,
        }
        return AuditRecord(detail=detail, **fields)

    def _write(self, record: AuditRecord) -> None:
        try:
            with self.db.session() as s:
                append(s, record)
        except Exception as exc:  # noqa: BLE001 - the change is made; a lost entry is logged
            self.failures += 1
            if worth_logging(self.failures):
                log.error(
                    "audit entry not written",
                    action=record.action,
                    actor=record.actor,
                    error=str(exc),
                    failures=self.failures,
                )
