"""Who receives warnings (``OrgContact``, by duty) and what was sent to them (``Notification``).

Contacts: every human role reads those in its subtree; administrators write any, enterprise
users their own organisation's; operators read only.  A duty must sit where the escalation
table looks for it: safety department and headquarters in an enterprise or gas station,
district duties in a county (or city), the monitoring centre in a city.
Notifications: administrators and operators, scoped to the organisation they are about.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Organisation, OrgKind, OutboxState, Role
from storage.sensor_models import Duty, Notification, OrgContact, SensorWarning
from vms.warning.recipients import CITY_DUTIES, DISTRICT_DUTIES, ENTERPRISE_DUTIES, SITE_KINDS

from ..deps import HUMANS, STAFF, Caller, CallerDep, SessionDep, count_into, require_roles

router = APIRouter(tags=["contacts"])

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,30}$")
HOLDERS: dict[frozenset[Duty], frozenset[OrgKind]] = {
    ENTERPRISE_DUTIES: SITE_KINDS,
    DISTRICT_DUTIES: frozenset({OrgKind.county, OrgKind.city}),
    CITY_DUTIES: frozenset({OrgKind.city}),
}


def _email(v: str) -> str:
    v = v.strip()
    if v and not EMAIL.match(v):
        raise ValueError("not an e-mail address")
    return v


def _phone(v: str) -> str:
    v = v.strip()
    if v and not PHONE.match(v):
        raise ValueError("a phone number has digits (and an optional leading +)")
    return v


def _url(v: str) -> str:
    v = v.strip()
    if v and not re.match(r"^https?://[^\s/]+", v):
        raise ValueError("must be an http:// or https:// URL")
    return v


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org_id: int
    duty: Duty
    name: str = Field("", max_length=200)
    email: str = Field("", max_length=200)
    phone: str = Field("", max_length=32)
    webhook_url: str = Field("", max_length=500)
    enabled: bool = True

    _e = field_validator("email")(_email)
    _p = field_validator("phone")(_phone)
    _u = field_validator("webhook_url")(_url)


class ContactPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duty: Duty | None = None
    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=32)
    webhook_url: str | None = Field(None, max_length=500)
    enabled: bool | None = None

    _e = field_validator("email")(lambda v: None if v is None else _email(v))
    _p = field_validator("phone")(lambda v: None if v is None else _phone(v))
    _u = field_validator("webhook_url")(lambda v: None if v is None else _url(v))


class ContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    org_id: int
    duty: Duty
    name: str
    email: str
    phone: str
    webhook_url: str
    enabled: bool


class NotificationOut(BaseModel):
    id: int
    channel: str
    target: str
    subject: str
    state: OutboxState
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str
    org_id: int | None
    warning_id: str | None = None
    event: str = Field("", description="what the notice was about: opened, notice, onsite, ...")


def _org(caller: Caller, session: Session, org_id: int) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None or not caller.sees_path(org.path):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"organisation {org_id} not found")
    return org


def _may_write(caller: Caller, org: Organisation) -> None:
    if caller.role == Role.admin:
        return
    if caller.role == Role.enterprise and caller.user.org_id == org.id:
        return
    raise HTTPException(status.HTTP_403_FORBIDDEN, "only administrators or the organisation itself")


def _check_holder(org: Organisation, duty: Duty) -> None:
    for duties, kinds in HOLDERS.items():
        if duty in duties and org.kind not in kinds:
            where = " or ".join(sorted(k.value for k in kinds))
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"duty {duty.value} belongs to a {where}, not to a {org.kind.value}",
            )


def _visible_contact(caller: Caller, session: Session, contact_id: int) -> OrgContact:
    c = session.scalar(
        caller.scope(select(OrgContact).where(OrgContact.id == contact_id), OrgContact.org_id)
    )
    if c is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"contact {contact_id} not found")
    return c


@router.get("/api/contacts", response_model=list[ContactOut], dependencies=[require_roles(*HUMANS)])
def list_contacts(
    caller: CallerDep,
    session: SessionDep,
    org_id: int | None = None,
    duty: Duty | None = None,
) -> list[OrgContact]:
    stmt = caller.scope(select(OrgContact), OrgContact.org_id)
    if org_id is not None:
        stmt = stmt.where(OrgContact.org_id == _org(caller, session, org_id).id)
    if duty is not None:
        stmt = stmt.where(OrgContact.duty == duty)
    return list(session.scalars(stmt.order_by(OrgContact.org_id, OrgContact.duty, OrgContact.id)))


@router.post(
    "/api/contacts",
    response_model=ContactOut,
    status_code=201,
    dependencies=[require_roles(*HUMANS)],
)
def create_contact(body: ContactIn, caller: CallerDep, session: SessionDep) -> OrgContact:
    org = _org(caller, session, body.org_id)
    _may_write(caller, org)
    _check_holder(org, body.duty)
    contact = OrgContact(**body.model_dump())
    session.add(contact)
    session.flush()
    return contact


@router.get(
    "/api/contacts/{contact_id}", response_model=ContactOut, dependencies=[require_roles(*HUMANS)]
)
def get_contact(contact_id: int, caller: CallerDep, session: SessionDep) -> OrgContact:
    return _visible_contact(caller, session, contact_id)


@router.patch(
    "/api/contacts/{contact_id}", response_model=ContactOut, dependencies=[require_roles(*HUMANS)]
)
def update_contact(
    contact_id: int, body: ContactPatch, caller: CallerDep, session: SessionDep
) -> OrgContact:
    contact = _visible_contact(caller, session, contact_id)
    org = _org(caller, session, contact.org_id)
    _may_write(caller, org)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("duty") is not None:
        _check_holder(org, changes["duty"])
    for name, value in changes.items():
        if value is not None:
            setattr(contact, name, value)
    session.flush()
    return contact


@router.delete("/api/contacts/{contact_id}", status_code=204, dependencies=[require_roles(*HUMANS)])
def delete_contact(contact_id: int, caller: CallerDep, session: SessionDep) -> Response:
    contact = _visible_contact(caller, session, contact_id)
    _may_write(caller, _org(caller, session, contact.org_id))
    session.delete(contact)
    return Response(status_code=204)


@router.get(
    "/api/notifications",
    response_model=list[NotificationOut],
    dependencies=[require_roles(*STAFF)],
)
def list_notifications(
    caller: CallerDep,
    session: SessionDep,
    response: Response,
    state: OutboxState | None = None,
    channel: str | None = Query(None, max_length=16),
    warning_id: str | None = Query(None, max_length=36),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[NotificationOut]:
    """Newest first, with delivery state; ``X-Total-Count`` has the matching total."""
    stmt: Any = caller.scope(
        select(Notification, SensorWarning.warning_id).outerjoin(
            SensorWarning, SensorWarning.id == Notification.warning_pk
        ),
        Notification.org_id,
    )
    if state is not None:
        stmt = stmt.where(Notification.state == state)
    if channel is not None:
        stmt = stmt.where(Notification.channel == channel)
    if warning_id is not None:
        stmt = stmt.where(SensorWarning.warning_id == warning_id)
    count_into(session, stmt, response)
    rows = session.execute(stmt.order_by(Notification.id.desc()).limit(limit).offset(offset)).all()
    return [
        NotificationOut(
            id=n.id,
            channel=n.channel,
            target=n.target,
            subject=n.subject,
            state=n.state,
            attempts=n.attempts,
            created_at=n.created_at,
            next_attempt_at=n.next_attempt_at,
            sent_at=n.sent_at,
            last_error=n.last_error,
            org_id=n.org_id,
            warning_id=wid,
            event=str((n.payload or {}).get("event", "")),
        )
        for n, wid in rows
    ]
