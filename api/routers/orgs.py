"""Organisations (province → city → county → park/enterprise/gas station) and users."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from storage.models import Organisation, User

from ..deps import ADMIN, HUMANS, CallerDep, SessionDep, require_roles, visible_org
from ..orgs import OrgTreeError, create_org
from ..schemas import OrgIn, OrgOut, OrgPatch, UserIn, UserOut
from ..security import hash_password

router = APIRouter(prefix="/api", tags=["organisations"])


@router.get("/orgs", response_model=list[OrgOut], dependencies=[require_roles(*HUMANS)])
def list_orgs(caller: CallerDep, session: SessionDep) -> list[Organisation]:
    stmt = select(Organisation).order_by(Organisation.path)
    if caller.org_path is not None:
        stmt = stmt.where(Organisation.path.startswith(caller.org_path))
    return list(session.scalars(stmt))


def _visible_org(caller: CallerDep, session: SessionDep, org_id: int | None) -> Organisation | None:
    if org_id is None:
        if caller.org_path is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "an organisation is required")
        return None
    return visible_org(caller, session, org_id)


@router.post("/orgs", response_model=OrgOut, status_code=201, dependencies=[require_roles(*ADMIN)])
def add_org(body: OrgIn, caller: CallerDep, session: SessionDep) -> Organisation:
    parent = _visible_org(caller, session, body.parent_id)
    try:
        org = create_org(session, body.name, body.kind, parent, body.code)
    except OrgTreeError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    org.uplink_device_code = body.uplink_device_code
    return org


@router.patch("/orgs/{org_id}", response_model=OrgOut, dependencies=[require_roles(*ADMIN)])
def update_org(org_id: int, body: OrgPatch, caller: CallerDep, session: SessionDep) -> Organisation:
    """Rename, recode, or give a site the DEVICE_CODE the province knows it by."""
    org = visible_org(caller, session, org_id)
    for field, value in body.model_dump(exclude_none=True).items():
        setattr(org, field, value)
    return org


@router.get("/users", response_model=list[UserOut], dependencies=[require_roles(*ADMIN)])
def list_users(caller: CallerDep, session: SessionDep) -> list[User]:
    return list(session.scalars(caller.scope(select(User), User.org_id).order_by(User.id)))


@router.post(
    "/users", response_model=UserOut, status_code=201, dependencies=[require_roles(*ADMIN)]
)
def add_user(body: UserIn, caller: CallerDep, session: SessionDep) -> User:
    _visible_org(caller, session, body.org_id)
    user = User(
        username=body.username,
        password_hash=hash_password(body.password),
        role=body.role,
        org_id=body.org_id,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT, "username already taken") from None
    return user
