"""The audit trail for auditors: list, verify the hash chain, export.

Readable by the ``auditor`` role only (separation of duties: the administrators whose
actions are recorded cannot read or prune their own record, and no route changes it).
An auditor of an organisation sees the entries of actors in its subtree; one without an
organisation sees all, failed logins under unknown names among them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, select

from storage.audit_models import AuditEntry, verify
from storage.models import Organisation

from ..deps import AUDITORS, Caller, CallerDep, ServicesDep, SessionDep, require_roles

router = APIRouter(prefix="/api/audit", tags=["audit"], dependencies=[require_roles(*AUDITORS)])

EXPORT_COLUMNS = (
    "id",
    "at",
    "actor",
    "actor_id",
    "role",
    "org_id",
    "client",
    "action",
    "target",
    "outcome",
    "detail",
    "prev_hash",
    "hash",
)


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor: str
    actor_id: int | None
    role: str
    org_id: int | None
    client: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def _scoped(caller: Caller, stmt: Select[Any]) -> Select[Any]:
    org = caller.user.org
    if org is None:
        return stmt
    sub = select(Organisation.id).where(Organisation.path.startswith(org.path))
    return stmt.where(AuditEntry.org_id.in_(sub))


def _filtered(
    caller: Caller,
    since: datetime | None,
    until: datetime | None,
    actor: str | None,
    action: str | None,
    outcome: str | None,
) -> Select[Any]:
    stmt = _scoped(caller, select(AuditEntry))
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    if actor:
        stmt = stmt.where(AuditEntry.actor == actor)
    if action:
        stmt = stmt.where(AuditEntry.action.contains(action))
    if outcome:
        stmt = stmt.where(AuditEntry.outcome == outcome)
    return stmt


@router.get("", response_model=list[AuditOut])
def list_audit(
    caller: CallerDep,
    session: SessionDep,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = Query(None, description="part of the action, e.g. 'login' or 'PATCH'"),
    outcome: str | None = Query(None, pattern="^(ok|failed|denied|error|locked|throttled)$"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[AuditEntry]:
    """Newest first."""
    stmt = _filtered(caller, since, until, actor, action, outcome)
    return list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)))


@router.get("/verify")
def verify_chain(session: SessionDep) -> dict[str, Any]:
    """Recompute the whole chain: ``ok`` false names the first entry changed or missing."""
    return verify(session).as_dict()


@router.get("/export.csv")
def export_csv(
    caller: CallerDep,
    services: ServicesDep,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
) -> StreamingResponse:
    """Oldest first, with the hashes, so an exported range can be checked offline."""
    stmt = _filtered(caller, since, until, actor, action, outcome).order_by(AuditEntry.id)

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(EXPORT_COLUMNS)
        with services.db.session() as s:
            for e in s.scalars(stmt.execution_options(yield_per=500)):
                values = [getattr(e, c) for c in EXPORT_COLUMNS]
                values[1] = e.at.isoformat(timespec="microseconds")
                values[10] = json.dumps(e.detail, ensure_ascii=False, sort_keys=True)
                writer.writerow(values)
                if buf.tell() > 64 * 1024:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
        yield buf.getvalue()

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )
