"""Who may see and change which sensor-side rows, shared by the sensor routers.

Gateways, installations and points belong to one enterprise or gas station; a caller sees
them when that organisation lies in its subtree (404 otherwise, so nothing leaks), and only
administrators and the enterprise's own users change them (operators read).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from anyio import from_thread
from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Organisation, OrgKind, Role
from vms.logging import get_logger
from vms.services import Services

from .deps import Caller, visible_org

log = get_logger("api.sensors")

SITE_KINDS = (OrgKind.enterprise, OrgKind.gas_station)
WRITERS = (Role.admin, Role.enterprise)  # operators watch; they do not reconfigure a site

T = TypeVar("T")


def invalid(errors: Iterable[tuple[str, str]], where: str = "body") -> RequestValidationError:
    """A 422 in the app's one error shape: ``{"detail", "errors": [{"field", "error"}]}``."""
    return RequestValidationError(
        [
            {"loc": (where, *field.split(".")), "msg": msg, "type": "value_error"}
            for field, msg in errors
        ]
    )


def from_pydantic(exc: ValidationError) -> RequestValidationError:
    """A model check run by hand (on a merged PATCH, on an import row) answered like a body."""
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])


def site_org(caller: Caller, session: Session, org_id: int | None) -> Organisation:
    """The enterprise or gas station a new row belongs to: the one named, or the caller's own."""
    if org_id is None:
        org = caller.user.org
        if org is None or org.kind not in SITE_KINDS:
            raise invalid([("org_id", "org_id is required: the enterprise or gas station")])
        return org
    org = visible_org(caller, session, org_id)
    if org.kind not in SITE_KINDS:
        raise invalid(
            [
                (
                    "org_id",
                    f"organisation {org_id} is a {org.kind.value}, not an enterprise or station",
                )
            ]
        )
    return org


def visible_row(caller: Caller, session: Session, model: type[T], pk: int, what: str) -> T:
    """The row with this id if its organisation is in the caller's subtree; 404 otherwise."""
    col: Any = model.org_id  # type: ignore[attr-defined]
    stmt = caller.scope(select(model).where(model.id == pk), col)  # type: ignore[attr-defined]
    row = session.scalar(stmt)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {pk} not found")
    return row


def org_paths(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Organisation.id, Organisation.path)).all())


def reload_ingest(services: Services) -> None:
    """After a committed change (from a handler's worker thread): apply it to the readings
    path at once.  A failure only delays it to the next ``ingest.refresh_s`` round."""
    ingest = services.ingest
    if ingest is None:
        return
    try:
        from_thread.run(ingest.reload)
    except Exception as exc:  # noqa: BLE001 - the change is stored; the refresh loop applies it
        log.warning("ingest reload after a change failed", error=str(exc).splitlines()[0])


async def reload_ingest_async(services: Services) -> None:
    """:func:`reload_ingest` for handlers on the event loop."""
    if services.ingest is None:
        return
    try:
        await services.ingest.reload()
    except Exception as exc:  # noqa: BLE001 - as above
        log.warning("ingest reload after a change failed", error=str(exc).splitlines()[0])


class BodyTooLarge(Exception):
    """A request body over the endpoint's limit (answered 413 before it is all read)."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refusing anything over ``limit`` bytes without buffering it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {int(declared)} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
