"""The seeds' "software interface" (软件接口方式): enterprises push encrypted batches to us.

The platform issues each enterprise an identification code and a 256-bit key.  A batch is
JSON sealed with **AES-256-GCM** under that key::

    POST /api/ingest/push
    {"ident": "<identification code>", "ts": <unix seconds>, "nonce": "<base64, 12 bytes>",
     "data": "<base64 ciphertext + 16-byte tag>"}

    plaintext: {"batch_id": "...", "readings": [{"tag": "PT-101", "at": "2026-12-03T08:00:00+08:00",
                "value": 0.42, "quality": 0}, ...]}

The associated data is ``"<ident>|<ts>"``, so neither can be altered.  Why AES-GCM and not
HMAC over TLS: the data must be *encrypted* with the *issued key* and cross a one-way
network-isolation device (spec/sensors.md §2), which terminates connections, so TLS would
protect only the hop up to it; a sealed payload stays confidential and authenticated end to
end through any proxy, and TLS can still be added on top.  ``ts`` must be within
``ingest.push_max_skew_s`` of our clock and a nonce is accepted once: a captured batch
cannot be replayed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .samples import RowError, Sample

NONCE_BYTES = 12
KEY_BYTES = 32


class PushError(Exception):
    """The batch as a whole is refused; ``status`` is the HTTP answer (400, 401, 409, 413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def new_key() -> str:
    """A fresh enterprise key, base64 (what the platform issues and stores)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def new_ident_code() -> str:
    """A fresh identification code: 16 upper-case hex digits."""
    return secrets.token_hex(8).upper()


def _key_bytes(key_b64: str) -> bytes:
    key = base64.b64decode(key_b64)
    if len(key) != KEY_BYTES:
        raise ValueError("an enterprise key is 32 bytes")
    return key


def _aad(ident: str, ts: int) -> bytes:
    return f"{ident}|{ts}".encode()


def seal(
    ident: str, key_b64: str, payload: dict[str, Any], ts: int | None = None
) -> dict[str, Any]:
    """Client side: the envelope to POST (used by ``vms sim-sensors`` and the tests)."""
    ts = int(time.time()) if ts is None else ts
    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps(payload, ensure_ascii=False).encode()
    data = AESGCM(_key_bytes(key_b64)).encrypt(nonce, plain, _aad(ident, ts))
    return {
        "ident": ident,
        "ts": ts,
        "nonce": base64.b64encode(nonce).decode(),
        "data": base64.b64encode(data).decode(),
    }


class NonceCache:
    """Nonces seen within the skew window; a repeat is a replay."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.max_entries = max_entries

    def check_and_add(self, ident: str, nonce: str, now: float, window_s: float) -> bool:
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if at >= now - 2 * window_s and len(self._seen) < self.max_entries:
                break
            self._seen.popitem(last=False)
        if (ident, nonce) in self._seen:
            return False
        self._seen[(ident, nonce)] = now
        return True


def envelope_fields(body: Any) -> tuple[str, int, str, str]:
    if not isinstance(body, dict):
        raise PushError(400, "body must be a JSON object with ident, ts, nonce and data")
    missing = [k for k in ("ident", "ts", "nonce", "data") if k not in body]
    if missing:
        raise PushError(400, f"envelope lacks {', '.join(missing)}")
    ident, ts, nonce, data = body["ident"], body["ts"], body["nonce"], body["data"]
    if not isinstance(ident, str) or not ident:
        raise PushError(400, "ident must be the identification code (a string)")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise PushError(400, "ts must be an integer (unix seconds)")
    if not isinstance(nonce, str) or not isinstance(data, str):
        raise PushError(400, "nonce and data must be base64 strings")
    return ident, ts, nonce, data


def open_envelope(
    ident: str, ts: int, nonce_b64: str, data_b64: str, key_b64: str, now: float, skew_s: float
) -> dict[str, Any]:
    """Check the clock, decrypt and authenticate; the plaintext batch as a dict."""
    if abs(now - ts) > skew_s:
        raise PushError(401, f"ts {ts} is {abs(now - ts):.0f} s away from our clock")
    try:
        nonce = base64.b64decode(nonce_b64, validate=True)
        data = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise PushError(400, "nonce and data must be valid base64") from None
    if len(nonce) != NONCE_BYTES:
        raise PushError(400, f"nonce must be {NONCE_BYTES} bytes")
    try:
        plain = AESGCM(_key_bytes(key_b64)).decrypt(nonce, data, _aad(ident, ts))
    except (InvalidTag, ValueError):
        raise PushError(
            401, f"the batch could not be authenticated with the key issued to {ident}"
        ) from None
    try:
        batch = json.loads(plain)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PushError(400, f"decrypted batch is not JSON: {exc}") from None
    if not isinstance(batch, dict) or not isinstance(batch.get("readings"), list):
        raise PushError(400, 'decrypted batch must be an object with a "readings" list')
    return batch


@dataclass
class ParsedRows:
    samples: list[Sample]
    index: list[int]  # batch row of each sample
    errors: list[RowError]


def parse_time(value: Any) -> datetime:
    """ISO 8601 with an offset, or unix seconds / milliseconds (numbers)."""
    if isinstance(value, bool):
        raise ValueError("time must be ISO 8601 or unix seconds")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        at = datetime.fromisoformat(value)
        if at.tzinfo is None:
            raise ValueError("time needs a UTC offset, e.g. +08:00")
        return at
    raise ValueError("time must be ISO 8601 or unix seconds")


def parse_rows(rows: list[Any]) -> ParsedRows:
    """Shape checks per row; a bad row is named and the others go on."""
    out = ParsedRows([], [], [])
    for i, row in enumerate(rows):
        tag = row.get("tag") if isinstance(row, dict) else None
        shown = tag if isinstance(tag, str) else ""
        if not isinstance(row, dict):
            out.errors.append(RowError(i, "", "row must be an object"))
            continue
        if not isinstance(tag, str) or not tag:
            out.errors.append(RowError(i, "", "tag is missing"))
            continue
        try:
            at = parse_time(row.get("at"))
        except (ValueError, OverflowError, OSError) as exc:
            out.errors.append(RowError(i, shown, f"bad time {row.get('at')!r}: {exc}"))
            continue
        value = row.get("value")
        quality = row.get("quality", 0)
        if quality not in (0, 2):
            out.errors.append(RowError(i, shown, "quality must be 0 (good) or 2 (uncertain)"))
            continue
        out.samples.append(Sample(tag, at, value, quality))  # type: ignore[arg-type]
        out.index.append(i)
    return out
