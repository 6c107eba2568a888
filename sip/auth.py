"""HTTP digest for SIP REGISTER (RFC 2617 with the RFC 2069 no-qop fallback), GB28181 §2 flavour.

The ``uri`` of the Authorization header is hashed as sent (not the Request-URI), ``nc`` is
used as received, and the challenge always names ``algorithm=MD5`` (Dahua needs it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def parse_digest(value: str) -> dict[str, str]:
    """Parameters of a ``Digest k=v, ...`` header (keys lower-cased, quotes removed)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ValueError("not a Digest header")
    out: dict[str, str] = {}
    for key, raw in _PARAM.findall(rest):
        v = raw[1:-1] if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2 else raw
        out[key.lower()] = v
    return out


def digest_response(
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    ha1 = md5_hex(f"{username}:{realm}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    if qop:
        return md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return md5_hex(f"{ha1}:{nonce}:{ha2}")


def authorization_header(
    username: str, password: str, method: str, uri: str, challenge: dict[str, str]
) -> str:
    """The client side: answer a WWW-Authenticate challenge."""
    realm = challenge.get("realm", "")
    nonce = challenge.get("nonce", "")
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    nc, cnonce = "00000001", secrets.token_hex(4)
    resp = digest_response(username, realm, password, method, uri, nonce, qop, nc, cnonce)
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{resp}"',
        "algorithm=MD5",
    ]
    if qop:
        parts += [f'cnonce="{cnonce}"', f"qop={qop}", f"nc={nc}"]
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ",".join(parts)


@dataclass
class DigestResult:
    ok: bool
    reason: str = ""
    stale: bool = False


class DigestAuthenticator:
    """Server side: issues nonces that expire, checks responses."""

    def __init__(self, realm: str, nonce_ttl_s: float = 300.0, max_nonces: int = 100_000) -> None:
        self.realm = realm
        self.nonce_ttl_s = nonce_ttl_s
        self.max_nonces = max_nonces
        self._nonces: dict[str, float] = {}

    def challenge(self, stale: bool = False) -> str:
        now = time.monotonic()
        if len(self._nonces) >= self.max_nonces:
            self._nonces = {n: t for n, t in self._nonces.items() if now - t < self.nonce_ttl_s}
            while len(self._nonces) >= self.max_nonces:
                self._nonces.pop(next(iter(self._nonces)))
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = now
        extra = ",stale=TRUE" if stale else ""
        return f'Digest realm="{self.realm}",qop="auth",nonce="{nonce}",algorithm=MD5{extra}'

    def verify(self, header: str, method: str, password: str) -> DigestResult:
        try:
            p = parse_digest(header)
        except ValueError as exc:
            return DigestResult(False, str(exc))
        nonce = p.get("nonce", "")
        issued = self._nonces.get(nonce)
        if issued is None:
            return DigestResult(False, "unknown nonce", stale=True)
        if time.monotonic() - issued > self.nonce_ttl_s:
            self._nonces.pop(nonce, None)
            return DigestResult(False, "nonce expired", stale=True)
        if p.get("algorithm", "MD5").upper() not in ("MD5", ""):
            return DigestResult(False, f"algorithm {p.get('algorithm')} not supported")
        qop = p.get("qop") or None
        expected = digest_response(
            p.get("username", ""),
            p.get("realm", self.realm),
            password,
            method,
            p.get("uri", ""),
            nonce,
            qop,
            p.get("nc", ""),
            p.get("cnonce", ""),
        )
        if not hmac.compare_digest(expected, p.get("response", "").lower()):
            return DigestResult(False, "wrong password")
        return DigestResult(True)
