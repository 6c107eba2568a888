"""Installations of an enterprise: tank areas, warehouses, process units (one of the 18
supervised processes), loading racks — where its points sit and what a warning is about."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.sensor_models import Installation, InstallationKind, Sensor
from vms.ingest.points import PROCESSES

from ..deps import HUMANS, Caller, CallerDep, SessionDep, require_roles, under_org
from ..sensor_access import WRITERS, from_pydantic, site_org, visible_row

router = APIRouter(prefix="/api/installations", tags=["sensors"])


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: InstallationKind
    name: str = Field(min_length=1, max_length=200)
    code: str = Field("", max_length=64)
    process: str = Field("", description="for process units: a key of vms.ingest.points.PROCESSES")
    major_hazard: bool = False  # 重大危险源
    longitude: float | None = Field(None, ge=-180, le=180)
    latitude: float | None = Field(None, ge=-90, le=90)

    @model_validator(mode="after")
    def _process(self) -> _Fields:
        if self.kind == InstallationKind.process_unit:
            if self.process not in PROCESSES:
                known = ", ".join(PROCESSES)
                raise ValueError(f"process must be one of the 18 processes: {known}")
        elif self.process:
            raise ValueError("process is only for process units")
        return self


class InstallationIn(_Fields):
    org_id: int | None = None  # empty → the caller's own enterprise


class InstallationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: InstallationKind | None = None
    name: str | None = Field(None, min_length=1, max_length=200)
    code: str | None = Field(None, max_length=64)
    process: str | None = None
    major_hazard: bool | None = None
    longitude: float | None = None
    latitude: float | None = None


class InstallationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    org_id: int
    kind: InstallationKind
    name: str
    code: str
    process: str
    process_name: str = ""
    major_hazard: bool
    longitude: float | None
    latitude: float | None
    points: int = 0
    created_at: datetime


FIELDS = tuple(_Fields.model_fields)


def to_out(row: Installation, points: int) -> InstallationOut:
    out = InstallationOut.model_validate(row)
    out.process_name = PROCESSES.get(row.process, "")
    out.points = points
    return out


def _counts(session: Session, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(Sensor.installation_id, func.count())
        .where(Sensor.installation_id.in_(ids))
        .group_by(Sensor.installation_id)
    )
    return dict(rows.all())  # type: ignore[arg-type]


def visible_installation(caller: Caller, session: Session, pk: int) -> Installation:
    return visible_row(caller, session, Installation, pk, "installation")


@router.get("", response_model=list[InstallationOut], dependencies=[require_roles(*HUMANS)])
def list_installations(
    caller: CallerDep,
    session: SessionDep,
    org_id: int | None = Query(None, description="an organisation and everything under it"),
    kind: InstallationKind | None = None,
    major_hazard: bool | None = None,
    limit: int = Query(1000, ge=1, le=5000),
    offset: int = Query(0, ge=0),
) -> list[InstallationOut]:
    stmt = caller.scope(select(Installation), Installation.org_id)
    stmt = under_org(caller, session, stmt, Installation.org_id, org_id)
    if kind is not None:
        stmt = stmt.where(Installation.kind == kind)
    if major_hazard is not None:
        stmt = stmt.where(Installation.major_hazard == major_hazard)
    rows = list(session.scalars(stmt.order_by(Installation.id).limit(limit).offset(offset)))
    counts = _counts(session, [r.id for r in rows])
    return [to_out(r, counts.get(r.id, 0)) for r in rows]


@router.post(
    "", response_model=InstallationOut, status_code=201, dependencies=[require_roles(*WRITERS)]
)
def create_installation(
    body: InstallationIn, caller: CallerDep, session: SessionDep
) -> InstallationOut:
    org = site_org(caller, session, body.org_id)
    row = Installation(org_id=org.id, **body.model_dump(exclude={"org_id"}))
    session.add(row)
    session.flush()
    return to_out(row, 0)


@router.get(
    "/{installation_id}", response_model=InstallationOut, dependencies=[require_roles(*HUMANS)]
)
def get_installation(
    installation_id: int, caller: CallerDep, session: SessionDep
) -> InstallationOut:
    row = visible_installation(caller, session, installation_id)
    return to_out(row, _counts(session, [row.id]).get(row.id, 0))


@router.patch(
    "/{installation_id}", response_model=InstallationOut, dependencies=[require_roles(*WRITERS)]
)
def patch_installation(
    installation_id: int, body: InstallationPatch, caller: CallerDep, session: SessionDep
) -> InstallationOut:
    """The merged result is checked as a whole (a kind change needs a fitting process)."""
    row = visible_installation(caller, session, installation_id)
    merged = {name: getattr(row, name) for name in FIELDS}
    merged.update(body.model_dump(exclude_unset=True))
    if merged["kind"] != InstallationKind.process_unit and "process" not in body.model_fields_set:
        merged["process"] = ""  # leaving the process-unit kind drops the process
    try:
        checked = _Fields.model_validate(merged)
    except ValidationError as exc:
        raise from_pydantic(exc) from None
    for name in FIELDS:
        setattr(row, name, getattr(checked, name))
    return to_out(row, _counts(session, [row.id]).get(row.id, 0))


@router.delete("/{installation_id}", status_code=204, dependencies=[require_roles(*WRITERS)])
def delete_installation(installation_id: int, caller: CallerDep, session: SessionDep) -> None:
    """Its points stay, with no installation."""
    session.delete(visible_installation(caller, session, installation_id))
