"""Organisations (province → city → county → park/enterprise/gas station) and users."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.accounts import revoke_tokens, set_password, unlock
from storage.models import Organisation, Role, User
from storage.org_tree import OrgTreeError, create_org
from vms.logging import get_logger
from vms.uplink.identity import SITE_KINDS, unreportable_cameras

from ..accounts import checked_password
from ..deps import (
    ADMIN,
    HUMANS,
    Caller,
    CallerDep,
    ServicesDep,
    SessionDep,
    require_roles,
    visible_org,
)
from ..schemas import (
    MachineTokenIn,
    OrgIn,
    OrgOut,
    OrgPatch,
    TokenResponse,
    UserIn,
    UserOut,
    UserPatch,
)
from ..security import create_token

router = APIRouter(prefix="/api", tags=["organisations"])
log = get_logger("vms.api.orgs")


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
def update_org(
    org_id: int, body: OrgPatch, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> OrgOut:
    """Rename, recode, or give a site the DEVICE_CODE the province knows it by.  A site's
    cameras with analysis on that are left without a VIDEO_CODE (their codes start with the
    old code) are named in ``cameras_without_video_code`` and logged: each needs its
    ``uplink_video_code``; their alarms are kept here, not reported, until then."""
    org = visible_org(caller, session, org_id)
    for field, value in body.model_dump(exclude_none=True).items():
        setattr(org, field, value)
    out = OrgOut.model_validate(org)
    if org.kind in SITE_KINDS:
        session.flush()
        out.cameras_without_video_code = [
            f"{c.device.device_id}/{c.channel_id}" for c in unreportable_cameras(session, org)
        ]
        if out.cameras_without_video_code and any(
            r.table4_url for r in services.settings.uplink.receivers
        ):
            log.warning(
                "cameras without a VIDEO_CODE: their alarms will not be reported",
                org_id=org.id,
                code=org.code,
                cameras=out.cameras_without_video_code,
            )
    return out


@router.get("/users", response_model=list[UserOut], dependencies=[require_roles(*ADMIN)])
def list_users(caller: CallerDep, session: SessionDep) -> list[User]:
    return list(session.scalars(caller.scope(select(User), User.org_id).order_by(User.id)))


@router.post(
    "/users", response_model=UserOut, status_code=201, dependencies=[require_roles(*ADMIN)]
)
def add_user(body: UserIn, caller: CallerDep, session: SessionDep, services: ServicesDep) -> User:
    """The password given here is the administrator's: the user must change it at first login."""
    _visible_org(caller, session, body.org_id)
    checked_password(body.password, body.username, services.settings.auth.password_min_length)
    user = User(username=body.username, password_hash="", role=body.role, org_id=body.org_id)
    set_password(user, body.password, by_owner=False)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT, "username already taken") from None
    return user


def _visible_user(caller: Caller, session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not caller.sees_path(user.org.path if user.org else None):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {user_id} not found")
    return user


@router.patch("/users/{user_id}", response_model=UserOut, dependencies=[require_roles(*ADMIN)])
def update_user(
    user_id: int, body: UserPatch, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> User:
    """Role, organisation, disable/enable, password reset, unlock — within the admin's subtree."""
    user = _visible_user(caller, session, user_id)
    revoke = False
    if body.org_id is not None or body.move_to_top:
        org = _visible_org(caller, session, None if body.move_to_top else body.org_id)
        new_org_id = org.id if org is not None else None
        revoke |= new_org_id != user.org_id
        user.org_id = new_org_id
    if body.role is not None:
        revoke |= body.role != user.role
        user.role = body.role
    if body.is_active is not None:
        if not body.is_active and user.id == caller.user.id:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "you cannot disable yourself"
            )
        revoke |= not body.is_active
        user.is_active = body.is_active
    if body.password is not None:
        min_length = services.settings.auth.password_min_length
        set_password(
            user, checked_password(body.password, user.username, min_length), by_owner=False
        )
    if body.unlock:
        unlock(user)
    if revoke:
        revoke_tokens(user)
    return user


@router.post(
    "/users/{user_id}/token", response_model=TokenResponse, dependencies=[require_roles(*ADMIN)]
)
def machine_token(
    user_id: int, body: MachineTokenIn, caller: CallerDep, session: SessionDep, request: Request
) -> TokenResponse:
    """A long-lived token for an ``uplink`` machine client (a lower node's sender posting to
    ``/api/intake``): shown once, revoked with the user's other tokens by ``/revoke``."""
    user = _visible_user(caller, session, user_id)
    if user.role != Role.uplink:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "machine tokens are for uplink users only"
        )
    if user.org_id is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "give the uplink user the organisation it reports for first",
        )
    ttl = body.ttl_days * 86400
    token = create_token(
        request.app.state.jwt_secret, user.id, user.role.value, ttl, user.token_version
    )
    return TokenResponse(access_token=token, expires_in=ttl)


@router.post("/users/{user_id}/revoke", status_code=204, dependencies=[require_roles(*ADMIN)])
def revoke_user_tokens(user_id: int, caller: CallerDep, session: SessionDep) -> Response:
    """Sign the user out everywhere (a lost laptop, a suspected leak)."""
    revoke_tokens(_visible_user(caller, session, user_id))
    return Response(status_code=204)
