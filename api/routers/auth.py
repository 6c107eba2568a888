"""Login (password → JWT), the caller's own profile, password change and sign-out.

Two guards against guessing: the per username-and-client rate limit (429, in memory) and
the account lockout (423, in the database, counted across clients and restarts) after
``auth.lockout_failures`` consecutive failures.  Every attempt lands in the audit trail.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import select

from storage.accounts import locked_for, login_failed, login_succeeded, revoke_tokens, set_password
from storage.models import User
from storage.passwords import dummy_hash, verify_password

from ..accounts import checked_password, sign_out
from ..audit import note
from ..deps import CallerDep, SessionDep, password_change_due
from ..schemas import LoginRequest, MeOut, PasswordChange, TokenResponse, UserOut
from ..security import create_token

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _token(request: Request, user: User) -> TokenResponse:
    auth = request.app.state.services.settings.auth
    token = create_token(
        request.app.state.jwt_secret,
        user.id,
        user.role.value,
        auth.token_ttl_s,
        user.token_version,
    )
    return TokenResponse(
        access_token=token,
        expires_in=auth.token_ttl_s,
        password_change_required=password_change_due(user, auth.password_max_age_days),
    )


@router.post("/login", response_model=TokenResponse)
def login(body: LoginRequest, request: Request, session: SessionDep) -> TokenResponse:
    auth = request.app.state.services.settings.auth
    limiter = request.app.state.login_limiter
    client = request.client.host if request.client else "?"
    key = f"{body.username}|{client}"
    note(request, action="login", actor=body.username)
    wait = limiter.retry_after(key)
    if wait > 0:
        note(request, outcome="throttled")
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins; try again later",
            {"Retry-After": str(int(wait) + 1)},
        )
    user = session.scalar(select(User).where(User.username == body.username))
    password_ok = verify_password(user.password_hash if user else dummy_hash(), body.password)
    known = user is not None and user.is_active
    if user is not None:
        note(request, actor_id=user.id, role=user.role.value, org_id=user.org_id)
    now = datetime.now(UTC)
    if known and (locked := locked_for(user, now)) > 0:
        note(request, outcome="locked")
        raise HTTPException(
            status.HTTP_423_LOCKED,
            "account locked after repeated failed logins; try again later or ask an administrator",
            {"Retry-After": str(int(locked) + 1)},
        )
    if not known or not password_ok:
        limiter.failed(key)
        locks = known and login_failed(user, now, auth.lockout_failures, auth.lockout_s)
        session.commit()  # the count survives the error below
        note(request, outcome="failed", detail={"account_locked": locks})
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    limiter.succeeded(key)
    login_succeeded(user)
    answer = _token(request, user)
    note(
        request, outcome="ok", detail={"password_change_required": answer.password_change_required}
    )
    return answer


@router.get("/me", response_model=MeOut)
def me(caller: CallerDep, request: Request) -> MeOut:
    auth = request.app.state.services.settings.auth
    due = password_change_due(caller.user, auth.password_max_age_days)
    profile = UserOut.model_validate(caller.user).model_dump()
    return MeOut(**profile, password_change_required=due)


@router.post("/password", response_model=TokenResponse)
def change_password(
    body: PasswordChange, caller: CallerDep, request: Request, session: SessionDep
) -> TokenResponse:
    """The caller's own password; every older token is revoked and a new one returned."""
    auth = request.app.state.services.settings.auth
    user = caller.user
    if not verify_password(user.password_hash, body.current_password):
        login_failed(user, datetime.now(UTC), auth.lockout_failures, auth.lockout_s)
        session.commit()
        raise HTTPException(status.HTTP_403_FORBIDDEN, "current password is wrong")
    checked_password(body.new_password, user.username, auth.password_min_length)
    if verify_password(user.password_hash, body.new_password):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "new password must differ from the current one"
        )
    set_password(user, body.new_password, by_owner=True)
    session.flush()
    return _token(request, user)


@router.post("/logout", status_code=204)
def logout(
    caller: CallerDep, request: Request, session: SessionDep, everywhere: bool = False
) -> Response:
    """Sign out: this token stops working (``everywhere=true``: every token of this user)."""
    if everywhere:
        revoke_tokens(caller.user)
    else:
        sign_out(session, request.state.token_claims)
    return Response(status_code=204)
