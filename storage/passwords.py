"""Password hashing and the password policy, below the API: the CLI, the demo seeder and
the node's bootstrap set passwords without importing ``api``.

Passwords are hashed with Argon2id (argon2-cffi).
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.cache
def dummy_hash() -> str:
    """Verified against when the user does not exist, so timing does not reveal usernames."""
    return _hasher.hash(secrets.token_urlsafe(16))


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_CLASSES = (str.islower, str.isupper, str.isdigit)


def password_problem(password: str, username: str, min_length: int) -> str | None:
    """Why a new password is refused (GB/T 22239 level 3 complexity), or None when it is fine."""
    if len(password) < min_length:
        return f"password must have at least {min_length} characters"
    kinds = sum(any(test(c) for c in password) for test in _CLASSES)
    kinds += any(not c.isalnum() for c in password)
    if kinds < 3:
        return (
            "password must mix at least three of: lower case, upper case, digits, other characters"
        )
    if username and username.lower() in password.lower():
        return "password must not contain the username"
    return None
