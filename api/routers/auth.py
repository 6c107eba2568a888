"""Login (password → JWT) and the caller's own profile."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import select

from storage.models import User

from ..deps import CallerDep, SessionDep
from ..schemas import LoginRequest, TokenResponse, UserOut
from ..security import create_token, dummy_hash, verify_password

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/login", response_model=TokenResponse)
def login(body: LoginRequest, request: Request, session: SessionDep) -> TokenResponse:
    limiter = request.app.state.login_limiter
    client = request.client.host if request.client else "?"
    key = f"{body.username}|{client}"
    wait = limiter.retry_after(key)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins; try again later",
            {"Retry-After": str(int(wait) + 1)},
        )
    user = session.scalar(select(User).where(User.username == body.username))
    password_ok = verify_password(user.password_hash if user else dummy_hash(), body.password)
    if user is None or not user.is_active or not password_ok:
        limiter.failed(key)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    limiter.succeeded(key)
    settings = request.app.state.services.settings
    ttl = settings.auth.token_ttl_s
    token = create_token(request.app.state.jwt_secret, user.id, user.role.value, ttl)
    return TokenResponse(access_token=token, expires_in=ttl)


@router.get("/me", response_model=UserOut)
def me(caller: CallerDep) -> User:
    return caller.user
