"""FastAPI dependencies: the node's services, a DB session, the caller and its scope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from storage.models import Organisation, Role, User
from vms.services import Services

from .accounts import TokenRefused, token_user

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
        user, claims = token_user(session, request.app.state.jwt_secret, token)
    except TokenRefused as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), {"WWW-Authenticate": "Bearer"}
        ) from None
    request.state.token_claims = claims  # sign-out revokes this very token
    path = user.org.path if user.org is not None else None
    if (path is None and user.role != Role.admin) or user.role == Role.auditor:
        # A non-admin without an organisation sees nothing; an auditor reads the audit
        # trail (api/routers/audit.py scopes it) and no operational data at all.
        path = "/nonexistent/"
    caller = Caller(user, path)
    # For the audit trail, as plain values: the session is closed when the entry is written.
    request.state.audit_actor = {
        "actor": user.username,
        "actor_id": user.id,
        "role": user.role.value,
        "org_id": user.org_id,
    }
    auth = request.app.state.services.settings.auth
    if request.url.path not in PASSWORD_CHANGE_PATHS and password_change_due(
        user, auth.password_max_age_days
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "password change required: POST /api/auth/password",
        )
    return caller


# What a user whose password must be changed may still do.
PASSWORD_CHANGE_PATHS = frozenset({"/api/auth/me", "/api/auth/password", "/api/auth/logout"})


def password_change_due(user: User, max_age_days: int) -> bool:
    """Set by someone else (bootstrap, an admin's reset) or older than the allowed age.

    Not for ``uplink`` machine clients: they post with a token an administrator issued
    (``POST /api/users/{id}/token``), and there is no one to change a password."""
    if user.role == Role.uplink:
        return False
    if user.must_change_password:
        return True
    if max_age_days <= 0:
        return False
    changed = user.password_changed_at or user.created_at
    return datetime.now(UTC) - changed > timedelta(days=max_age_days)


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
AUDITORS = (Role.auditor,)
