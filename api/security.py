"""Tokens and the login rate limiter (passwords: ``storage.passwords``).

Tokens are HS256 JWTs whose
secret comes from configuration or, when unset, from a random file in the
data folder so that tokens survive a restart but never live in the repo.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

ALGORITHM = "HS256"


def load_or_create_secret(configured: str, data_dir: Path) -> str:
    if configured:
        return configured
    path = Path(data_dir) / "jwt.secret"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def create_token(secret: str, user_id: int, role: str, ttl_s: int, version: int = 0) -> str:
    """``ver`` is the user's token_version: raising it there revokes this token."""
    now = datetime.now(UTC)
    claims = {
        "jti": secrets.token_hex(16),  # what a sign-out revokes
        "sub": str(user_id),
        "role": role,
        "ver": version,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> dict[str, Any]:
    """Raise ``jwt.InvalidTokenError`` when the token is bad or expired."""
    return jwt.decode(token, secret, algorithms=[ALGORITHM])


class LoginLimiter:
    """At most ``max_failures`` failed logins per key in a sliding window."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _trim(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def retry_after(self, key: str) -> float:
        """Seconds until the next attempt is allowed; 0 when allowed now."""
        now = time.monotonic()
        q = self._trim(key, now)
        if len(q) < self.max_failures:
            return 0.0
        return max(0.0, self.window_s - (now - q[0]))

    def failed(self, key: str) -> None:
        now = time.monotonic()
        self._trim(key, now).append(now)
        if len(self._failures) > 10000:  # bound memory under a spray of usernames
            for k in [k for k, q in self._failures.items() if not q][:5000]:
                del self._failures[k]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
