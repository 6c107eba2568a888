"""Account state changes shared by login, the user's own password change, the admin's edits
and the CLI: a password set by someone else must be changed at the next login, every change
of what a token allows raises ``token_version`` (revoking the tokens already issued), and a
locked account stays locked until its time runs out or an administrator unlocks it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.models import User
from storage.passwords import hash_password


def set_password(user: User, password: str, *, by_owner: bool) -> None:
    """A new password (already checked); one set by an administrator must be changed."""
    user.password_hash = hash_password(password)
    user.password_changed_at = datetime.now(UTC)
    user.must_change_password = not by_owner
    revoke_tokens(user)


def revoke_tokens(user: User) -> None:
    user.token_version = (user.token_version or 0) + 1


def locked_for(user: User, now: datetime) -> float:
    """Seconds the account stays locked; 0 when it is not."""
    if user.locked_until is None or user.locked_until <= now:
        return 0.0
    return (user.locked_until - now).total_seconds()


def login_failed(user: User, now: datetime, max_failures: int, lockout_s: int) -> bool:
    """Count a failure; True when this one locks the account."""
    user.failed_logins = (user.failed_logins or 0) + 1
    if user.failed_logins < max_failures:
        return False
    user.locked_until = now + timedelta(seconds=lockout_s)
    user.failed_logins = 0
    return True


def login_succeeded(user: User) -> None:
    user.failed_logins = 0
    user.locked_until = None


def unlock(user: User) -> None:
    user.failed_logins = 0
    user.locked_until = None
