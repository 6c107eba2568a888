"""HTTP digest for SIP REGISTER (RFC 2617 with the RFC 2069 no-qop fallback), GB28181 §2 flavour.

The ``uri`` of the Authorization header is hashed as sent (not the Request-URI), and the
challenge always names ``algorithm=MD5`` (Dahua needs it).

Nonces hold no server state until one is used: each is its issue time and a random salt
plus an HMAC over both, our realm, the client's transport address and the device id it was
issued to,
so a flood of challenges costs no memory, and a nonce captured on the wire is worthless
from any other address or for any other device.  Replays are refused by the ``nc`` a
used nonce has reached (a no-qop nonce is single-use); only successful checks are
remembered, until the nonce expires.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_NC = re.compile(r"^[0-9a-fA-F]{8}$")
_TIME_HEX = 12  # issue time in ms, hex: ~8,900 years of monotonic clock
_SALT_HEX = 8  # two nonces of one millisecond still differ
_MAC_HEX = 24  # 96 bits of HMAC-SHA256
_HEAD_HEX = _TIME_HEX + _SALT_HEX

Client = tuple[str, str, int]  # transport, host, port the request came from


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
    username: str,
    password: str,
    method: str,
    uri: str,
    challenge: dict[str, str],
    nc: int = 1,
) -> str:
    """The client side: answer a WWW-Authenticate challenge (``nc``: its use count)."""
    realm = challenge.get("realm", "")
    nonce = challenge.get("nonce", "")
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    nc_hex, cnonce = f"{nc:08x}", secrets.token_hex(4)
    resp = digest_response(username, realm, password, method, uri, nonce, qop, nc_hex, cnonce)
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{resp}"',
        "algorithm=MD5",
    ]
    if qop:
        parts += [f'cnonce="{cnonce}"', f"qop={qop}", f"nc={nc_hex}"]
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ",".join(parts)


@dataclass
class DigestResult:
    """``stale``: answer with a fresh challenge (not a wrong password); ``guess``: the
    credentials were checked and are wrong (counts towards the device's lockout)."""

    ok: bool
    reason: str = ""
    stale: bool = False
    guess: bool = False


@dataclass
class DigestCheck:
    """An Authorization whose nonce is ours, fresh and issued to this client and device."""

    params: dict[str, str]
    nonce: str
    nc: int  # 0 without qop (RFC 2069): single use
    expires_at: float


class DigestAuthenticator:
    """Server side: issues address-bound nonces, checks responses, refuses replays."""

    def __init__(
        self,
        realm: str,
        nonce_ttl_s: float = 300.0,
        max_used: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.realm = realm
        self.nonce_ttl_s = nonce_ttl_s
        self.max_used = max_used
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._used: dict[str, tuple[int, float]] = {}  # nonce → highest nc accepted, expiry

    def _mac(self, head: str, client: Client, device_id: str) -> str:
        transport, host, port = client
        text = f"{head}|{self.realm}|{transport.upper()}|{host}|{port}|{device_id}"
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:_MAC_HEX]

    def nonce(self, client: Client, device_id: str) -> str:
        issued = f"{int(self.clock() * 1000) & (16**_TIME_HEX - 1):0{_TIME_HEX}x}"
        head = issued + secrets.token_hex(_SALT_HEX // 2)
        return head + self._mac(head, client, device_id)

    def challenge(self, client: Client, device_id: str, stale: bool = False) -> str:
        extra = ",stale=TRUE" if stale else ""
        nonce = self.nonce(client, device_id)
        return f'Digest realm="{self.realm}",qop="auth",nonce="{nonce}",algorithm=MD5{extra}'

    def check_nonce(
        self, header: str, client: Client, device_id: str
    ) -> DigestCheck | DigestResult:
        """The cheap part, before any password is looked up: whose nonce, how old, which use."""
        try:
            p = parse_digest(header)
        except ValueError as exc:
            return DigestResult(False, str(exc), stale=True)
        nonce = p.get("nonce", "")
        if len(nonce) != _HEAD_HEX + _MAC_HEX or not all(c in "0123456789abcdef" for c in nonce):
            return DigestResult(False, "not our nonce", stale=True)
        head = nonce[:_HEAD_HEX]
        if not hmac.compare_digest(nonce[_HEAD_HEX:], self._mac(head, client, device_id)):
            return DigestResult(False, "nonce issued to another client or device", stale=True)
        expires_at = int(nonce[:_TIME_HEX], 16) / 1000 + self.nonce_ttl_s
        if self.clock() > expires_at:
            return DigestResult(False, "nonce expired", stale=True)
        if p.get("qop"):
            raw = p.get("nc", "")
            if p["qop"].lower() != "auth" or not _NC.match(raw):
                return DigestResult(False, "bad qop or nc", guess=True)
            nc = int(raw, 16)
        else:
            nc = 0
        if self._replayed(nonce, nc):
            return DigestResult(False, "nonce count replayed", stale=True)
        return DigestCheck(p, nonce, nc, expires_at)

    def _replayed(self, nonce: str, nc: int) -> bool:
        used = self._used.get(nonce)
        return used is not None and (nc == 0 or nc <= used[0])

    def verify_response(
        self, check: DigestCheck, method: str, password: str, device_id: str
    ) -> DigestResult:
        """The password part: our realm, the device's own id as username, the right hash.

        On success the nonce's count is taken (so the same Authorization never works twice).
        """
        p = check.params
        if p.get("realm") != self.realm:
            return DigestResult(False, f"realm {p.get('realm', '')[:40]!r} is not ours", guess=True)
        if p.get("username") != device_id:
            return DigestResult(False, "username is not the device id", guess=True)
        if p.get("algorithm", "MD5").upper() not in ("MD5", ""):
            return DigestResult(False, f"algorithm {p.get('algorithm', '')[:20]} not supported")
        qop = p.get("qop") or None
        expected = digest_response(
            device_id,
            self.realm,
            password,
            method,
            p.get("uri", ""),
            check.nonce,
            qop,
            p.get("nc", ""),
            p.get("cnonce", ""),
        )
        if not hmac.compare_digest(expected, p.get("response", "").lower()):
            return DigestResult(False, "wrong password", guess=True)
        if self._replayed(check.nonce, check.nc):  # another request took this count meanwhile
            return DigestResult(False, "nonce count replayed", stale=True)
        self._remember(check)
        return DigestResult(True)

    def verify(
        self, header: str, method: str, password: str, client: Client, device_id: str
    ) -> DigestResult:
        """Both parts at once (when the password is at hand)."""
        check = self.check_nonce(header, client, device_id)
        if isinstance(check, DigestResult):
            return check
        return self.verify_response(check, method, password, device_id)

    def _remember(self, check: DigestCheck) -> None:
        if len(self._used) >= self.max_used:
            now = self.clock()
            self._used = {n: u for n, u in self._used.items() if u[1] > now}
            while len(self._used) >= self.max_used:
                self._used.pop(next(iter(self._used)))
        self._used.pop(check.nonce, None)  # re-inserted: the oldest stay first
        self._used[check.nonce] = (check.nc, check.expires_at)

    @property
    def used_nonces(self) -> int:
        return len(self._used)
