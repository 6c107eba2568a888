"""Live push over WebSocket: ``/api/events/ws?token=<JWT>``.

Browsers cannot set headers on a WebSocket, so the JWT comes as a query parameter.  Each
client gets the events of its organisation subtree: alarm events carry ``org_path``; events
without one (device and system events) go to global administrators only.  The token is
checked again every ``RECHECK_S`` while the socket is open: a user signed out everywhere,
disabled, moved or given another role stops receiving within that time (closed with 1008),
as their HTTP requests stop at once.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status

from storage.models import Role

from ..accounts import TokenRefused, token_user
from ..deps import password_change_due

router = APIRouter(tags=["events"])

WS_POLICY_VIOLATION = status.WS_1008_POLICY_VIOLATION
RECHECK_S = 5.0


def _caller_path(services: object, token: str, secret: str) -> tuple[bool, str | None]:
    """(allowed, org_path) for a token; org_path None means everything."""
    with services.db.session() as s:  # type: ignore[attr-defined]
        try:
            user, _claims = token_user(s, secret, token)
        except TokenRefused:
            return False, None
        if user.role in (Role.auditor, Role.uplink):
            return False, None  # the audit trail, or a machine posting tables: not for them
        if password_change_due(user, services.settings.auth.password_max_age_days):  # type: ignore[attr-defined]
            return False, None
        if user.org is not None:
            return True, user.org.path
        return (True, None) if user.role == Role.admin else (False, None)


def visible(org_path: str | None, data: dict) -> bool:
    if org_path is None:
        return True
    event_path = data.get("org_path")
    return isinstance(event_path, str) and event_path.startswith(org_path)


@router.websocket("/api/events/ws")
async def events_ws(websocket: WebSocket) -> None:
    services = websocket.app.state.services
    token = websocket.query_params.get("token", "")
    allowed, org_path = await asyncio.to_thread(
        _caller_path, services, token, websocket.app.state.jwt_secret
    )
    if not allowed:
        await websocket.close(WS_POLICY_VIOLATION, "invalid or expired token")
        return
    await websocket.accept()

    async def drain_client() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()  # pings or nothing; we only detect the close

    def still_allowed() -> bool:
        """The token still grants what this socket was opened with."""
        again = _caller_path(services, token, websocket.app.state.jwt_secret)
        return again == (True, org_path)

    loop = asyncio.get_running_loop()
    reader = asyncio.create_task(drain_client())
    getter: asyncio.Future | None = None
    try:
        async with services.events.subscribe() as queue:
            await websocket.send_json({"kind": "hello", "scope": org_path or "/"})
            next_check = loop.time() + RECHECK_S
            while not reader.done():
                getter = getter or asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, reader},
                    timeout=max(0.0, next_check - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if reader in done:
                    break
                if getter in done:
                    event, getter = getter.result(), None
                    if visible(org_path, event.data):
                        await websocket.send_json(event.as_dict())
                if loop.time() >= next_check:
                    next_check = loop.time() + RECHECK_S
                    if not await asyncio.to_thread(still_allowed):
                        await websocket.close(WS_POLICY_VIOLATION, "token revoked; log in again")
                        break
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        if getter is not None:
            getter.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
