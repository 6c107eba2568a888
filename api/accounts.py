"""Account changes shared by login, the user's own password change and the admin's edits.

Each keeps the identification rules in one place: a password set by someone else must be
changed at the next login, every change of what a token allows raises ``token_version``
(revoking the tokens already issued), and a locked account stays locked until its time
runs out or an administrator unlocks it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
from fastapi import HTTPException, status
from sqlalchemy import delete
from sqlalchemy.orm import Session

from storage.models import RevokedToken, User
from storage.passwords import password_problem

from .security import decode_token


class TokenRefused(Exception):
    """A token that does not (or no longer) authenticates; the message says why."""


def token_user(session: Session, secret: str, token: str) -> tuple[User, dict[str, Any]]:
    """The active user a token stands for, checked against every way a token is revoked."""
    try:
        claims = decode_token(secret, token)
        user_id = int(claims["sub"])
    except (jwt.InvalidTokenError, KeyError, ValueError):
        raise TokenRefused("invalid or expired token") from None
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise TokenRefused("user disabled or removed")
    if claims.get("ver", 0) != user.token_version:
        raise TokenRefused("token revoked (password, role or organisation changed); log in again")
    jti = claims.get("jti")
    if isinstance(jti, str) and session.get(RevokedToken, jti) is not None:
        raise TokenRefused("signed out; log in again")
    return user, claims


def sign_out(session: Session, claims: dict[str, Any]) -> None:
    """Revoke one token (this browser), keeping the row only while the token could live."""
    now = datetime.now(UTC)
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
    jti, exp = claims.get("jti"), claims.get("exp")
    if isinstance(jti, str) and isinstance(exp, int | float):
        session.merge(RevokedToken(jti=jti, expires_at=datetime.fromtimestamp(exp, UTC)))


def checked_password(password: str, username: str, min_length: int) -> str:
    """The password if the policy accepts it; 422 naming the rule otherwise."""
    problem = password_problem(password, username, min_length)
    if problem is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)
    return password
