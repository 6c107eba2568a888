"""FastAPI dependencies: the node's services, a DB session, the caller and its scope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from storage.models import Organisation, Role, User
from vms.services import Services

from .security import decode_token

bearer = HTTPBearer(auto_error=False)


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    with services.db.session() as s:
        yield s


ServicesDep = Annotated[Services, Depends(get_services)]
# scope="function": the commit runs before the response is sent, so a failed commit is a 500,
# never a 200 for data that was not stored (the default runs it after the response).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Caller:
    """The authenticated user and the organisation subtree it may see."""

    user: User
    org_path: str | None  # None → everything (a global administrator)

    @property
    def role(self) -> Role:
        return self.user.role

    def sees_path(self, path: str | None) -> bool:
        if self.org_path is None:
            return True
        return path is not None and path.startswith(self.org_path)

    def scope(self, stmt: Select[Any], org_id_col: Any) -> Select[Any]:
        """Restrict a select to rows whose organisation lies in the caller's subtree."""
        if self.org_path is None:
            return stmt
        sub = select(Organisation.id).where(Organisation.path.startswith(self.org_path))
        return stmt.where(org_id_col.in_(sub))


def get_caller(
    request: Request,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    token = creds.credentials if creds else request.query_params.get("token")
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "not authenticated", {"WWW-Authenticate": "Bearer"}
        )
    try:
        claims = decode_token(request.app.state.jwt_secret, token)
        user_id = int(claims["sub"])
    except (jwt.InvalidTokenError, KeyError, ValueError):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or expired token", {"WWW-Authenticate": "Bearer"}
        ) from None
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "user disabled or removed")
    path = user.org.path if user.org is not None else None
    if path is None and user.role != Role.admin:
        path = "/nonexistent/"  # a non-admin without an organisation sees nothing
    return Caller(user, path)


CallerDep = Annotated[Caller, Depends(get_caller)]


def visible_org(caller: Caller, session: Session, org_id: int) -> Organisation:
    """The organisation if the caller may see it; 404 otherwise (no existence leak)."""
    org = session.get(Organisation, org_id)
    if org is None or not caller.sees_path(org.path):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"organisation {org_id} not found")
    return org


def under_org(
    caller: Caller, session: Session, stmt: Select[Any], org_id_col: Any, org_id: int | None
) -> Select[Any]:
    """A list's ``org_id`` filter: rows of that organisation and everything under it
    (404 when the caller may not see it); ``None`` leaves ``stmt`` as it is."""
    if org_id is None:
        return stmt
    org = visible_org(caller, session, org_id)
    sub = select(Organisation.id).where(Organisation.path.startswith(org.path))
    return stmt.where(org_id_col.in_(sub))


def count_into(session: Session, stmt: Select[Any], response: Response) -> int:
    """The number of rows ``stmt`` matches, also sent as ``X-Total-Count`` (paged lists)."""
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    response.headers["X-Total-Count"] = str(total)
    return total


def require_roles(*roles: Role) -> Any:
    def check(caller: CallerDep) -> Caller:
        if caller.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {caller.role.value} not allowed")
        return caller

    return Depends(check)


ADMIN = (Role.admin,)
STAFF = (Role.admin, Role.operator)
HUMANS = (Role.admin, Role.operator, Role.enterprise)
