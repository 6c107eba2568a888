"""HTTP transport to one receiver: multipart/form-data (default) or JSON with base64 image.

Delivery rule: a 2xx answer is delivered.  Everything else (refused, timeout, 3xx, 4xx
including 400/401/404, 5xx) is a failure the sender retries with back-off until the
item's age passes ``uplink.dead_after_s`` and it becomes a dead letter.  4xx is retried
too on purpose: a receiver's configuration mistake (token, path) gets fixed by people
later, and a record must not be lost meanwhile; dead letters can be re-sent by an admin.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass

import httpx

from vms.config import UplinkReceiver
from vms.logging import get_logger

from .tables import ALARM_ID, ALARM_IMAGE, ALARM_STATUS, TABLE2, TABLE3, TABLE4

log = get_logger("vms.uplink.transport")


@dataclass(frozen=True)
class PostResult:
    ok: bool
    status: int | None  # HTTP status, None when no answer came
    error: str  # "" on success


def table_url(receiver: UplinkReceiver, table: str) -> str:
    return {TABLE2: receiver.table2_url, TABLE3: receiver.table3_url, TABLE4: receiver.table4_url}[
        table
    ]


def image_filename(payload: dict[str, str]) -> str:
    return f"{payload.get(ALARM_ID, 'image')}-{payload.get(ALARM_STATUS, '')}.jpg"


class HttpTransport:
    """One pooled ``httpx.AsyncClient`` per receiver; TLS verification as configured."""

    def __init__(self, receiver: UplinkReceiver) -> None:
        self.receiver = receiver
        headers = {"User-Agent": "vms-gb28181-uplink"}
        if receiver.token:
            headers[receiver.auth_header] = receiver.token
        verify: bool | ssl.SSLContext = receiver.verify_tls
        if receiver.ca_file:  # a private CA: verified against it, never not at all
            verify = ssl.create_default_context(cafile=receiver.ca_file)
        elif not receiver.verify_tls:
            log.warning("uplink TLS verification off", receiver=receiver.name)
        self.client = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(receiver.timeout_s),
            headers=headers,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    async def post(self, table: str, payload: dict[str, str], image: bytes | None) -> PostResult:
        url = table_url(self.receiver, table)
        if not url:
            return PostResult(False, None, f"no {table}_url configured for {self.receiver.name}")
        try:
            if self.receiver.format == "json":
                body: dict[str, str] = dict(payload)
                if image is not None:
                    body[ALARM_IMAGE] = base64.b64encode(image).decode("ascii")
                resp = await self.client.post(url, json=body)
            else:
                # every Table field as a multipart form field, the picture as a file part
                parts: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
                    (name, (None, value, None)) for name, value in payload.items()
                ]
                if image is not None:
                    parts.append((ALARM_IMAGE, (image_filename(payload), image, "image/jpeg")))
                resp = await self.client.post(url, files=parts)
        except httpx.TimeoutException as exc:
            return PostResult(False, None, f"timeout: {exc.__class__.__name__}")
        except httpx.HTTPError as exc:
            return PostResult(False, None, f"{exc.__class__.__name__}: {exc}"[:500])
        if 200 <= resp.status_code < 300:
            return PostResult(True, resp.status_code, "")
        return PostResult(False, resp.status_code, f"HTTP {resp.status_code}: {resp.text[:200]}")

    async def aclose(self) -> None:
        await self.client.aclose()
