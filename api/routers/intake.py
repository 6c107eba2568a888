"""The node as a receiver: ``POST /api/intake/{table2,table3,table4}`` from the level below,
and the received records for the people watching from here.

Posting is for ``uplink`` machine clients only (a token from ``POST /api/users/{id}/token``),
each bound to the organisation it reports for; the answers follow a strict receiver's:
200 with the record id (``duplicate`` when it was already stored), 400 with every broken
rule, 401/403 for a wrong or missing token.  Bodies are multipart/form-data or JSON with a
base64 picture, as this project's own sender posts them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from storage.intake_models import IntakeRecord
from storage.models import Role
from vms.uplink.intake import IntakeRefused, accept
from vms.uplink.validation import parse_body

from ..deps import (
    HUMANS,
    Caller,
    CallerDep,
    ServicesDep,
    SessionDep,
    count_into,
    require_roles,
    under_org,
)
from ..pictures import picture_response

router = APIRouter(prefix="/api/intake", tags=["intake"])

Table = Literal["table2", "table3", "table4"]


class IntakeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    source_org_id: int
    table: str
    received_at: datetime
    reported_time: str
    fields: dict[str, Any]
    alarm_id: str
    alarm_status: str
    alarm_type: str
    device_code: str
    video_code: str
    company_code: str
    run_status: str
    relayed_to: int
    image_url: str = ""


def _out(record: IntakeRecord) -> IntakeOut:
    out = IntakeOut.model_validate(record)
    if record.image_key:
        out.image_url = f"/api/intake/{record.id}/image"
    return out


@router.post("/{table}", dependencies=[require_roles(Role.uplink)])
async def receive(table: Table, request: Request, caller: CallerDep) -> JSONResponse:
    """One Table 2, 3 or 4 record from the level below."""
    org_id = caller.user.org_id
    if org_id is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "an uplink client needs the organisation it reports for"
        )
    body = await request.body()
    try:
        fields, image = parse_body(request.headers.get("content-type", ""), body)
    except (ValueError, UnicodeDecodeError) as exc:
        return JSONResponse({"errors": [f"unparsable body: {exc}"]}, status_code=400)
    services = request.app.state.services
    user_id = caller.user.id

    def store() -> dict[str, Any]:
        with services.db.session() as s:
            result = accept(
                s,
                services.objects,
                services.settings,
                org_id,
                user_id,
                table,
                fields,
                image,
                datetime.now(UTC),
            )
        return {"ok": True, "id": result.record_id, "duplicate": result.duplicate}

    try:
        answer = await run_in_threadpool(store)
    except IntakeRefused as exc:
        return JSONResponse({"errors": exc.errors}, status_code=400)
    if not answer["duplicate"] and services.uplink is not None:
        services.uplink.wake_threadsafe()
    return JSONResponse(answer)


def _visible(caller: Caller, session: SessionDep, record_id: int) -> IntakeRecord:
    record = session.scalar(
        caller.scope(select(IntakeRecord), IntakeRecord.source_org_id).where(
            IntakeRecord.id == record_id
        )
    )
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"record {record_id} not found")
    return record


@router.get("", response_model=list[IntakeOut], dependencies=[require_roles(*HUMANS)])
def list_intake(
    caller: CallerDep,
    session: SessionDep,
    response: Response,
    table: Table | None = None,
    org_id: int | None = Query(None, description="the reporting organisation and its subtree"),
    alarm_status: Literal["0", "1"] | None = None,
    video_code: str | None = None,
    device_code: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[IntakeOut]:
    """Newest first, within the caller's subtree of reporting organisations."""
    stmt = caller.scope(select(IntakeRecord), IntakeRecord.source_org_id)
    stmt = under_org(caller, session, stmt, IntakeRecord.source_org_id, org_id)
    for column, value in (
        (IntakeRecord.table, table),
        (IntakeRecord.alarm_status, alarm_status),
        (IntakeRecord.video_code, video_code),
        (IntakeRecord.device_code, device_code),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(IntakeRecord.received_at >= since)
    if until is not None:
        stmt = stmt.where(IntakeRecord.received_at < until)
    count_into(session, stmt, response)
    rows = session.scalars(stmt.order_by(IntakeRecord.id.desc()).limit(limit).offset(offset))
    return [_out(r) for r in rows]


@router.get("/{record_id}", response_model=IntakeOut, dependencies=[require_roles(*HUMANS)])
def get_intake(record_id: int, caller: CallerDep, session: SessionDep) -> IntakeOut:
    return _out(_visible(caller, session, record_id))


@router.get("/{record_id}/image", dependencies=[require_roles(*HUMANS)])
def intake_image(
    record_id: int, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> Response:
    """The record's picture, as received (a presigned redirect on S3)."""
    record = _visible(caller, session, record_id)
    if not record.image_key:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no picture for this record")
    return picture_response(services.objects, record.image_key)
