"""``POST /api/ingest/push``: the enterprise's encrypted batches (spec/sensors.md §2 软件接口方式).

No JWT: the envelope authenticates itself (AES-256-GCM under the key issued to the
identification code, see ``vms/ingest/push.py``).  The answer comes only after the accepted
rows are stored, so a client that got 200 may forget its batch:

- 200 ``{"batch_id", "accepted", "duplicates", "late", "out_of_range": [], "rejected": []}``;
  ``out_of_range`` names rows outside the point's instrument range: stored, flagged as a fault
  (not a warning), so they are not refused;
- 422, same body, when some rows were refused: ``rejected`` names each one (row index in the
  batch, tag, error) and the valid rows are stored;
- 400 malformed envelope or batch, 401 not authenticated (unknown code, wrong key, altered
  envelope, ``ts`` too far from our clock), 403 gateway disabled, 409 a replayed envelope,
  413 body or batch too large, 503 (with ``Retry-After``) when the node cannot take or store
  the rows now.  An envelope is single-use: seal the batch again to resend it; rows already
  stored then count as duplicates, never twice.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from storage.sensor_models import GatewayProtocol, SensorGateway
from vms.ingest.points import Point
from vms.ingest.push import (
    NonceCache,
    ParsedRows,
    PushError,
    envelope_fields,
    open_envelope,
    parse_rows,
)
from vms.ingest.samples import IngestBusy, RowError, Sample
from vms.logging import get_logger
from vms.services import Services

from ..sensor_access import BodyTooLarge, read_limited

log = get_logger("api.ingest_push")
router = APIRouter(tags=["sensors"])

MAX_BYTES = 8 * 1024 * 1024  # one envelope; ~100 k readings fit
OFFLOAD_BYTES = 64 * 1024  # larger batches are decrypted and parsed off the event loop
COMMIT_WAIT_S = 20.0  # longest wait for the rows to be stored before answering 503
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class PushGateway:
    id: int
    org_id: int
    enabled: bool
    protocol: GatewayProtocol
    key: str


async def _gateway(services: Services, ident: str) -> PushGateway | None:
    def load(session: Any) -> PushGateway | None:
        row = session.scalar(select(SensorGateway).where(SensorGateway.ident_code == ident))
        if row is None:
            return None
        return PushGateway(row.id, row.org_id, row.enabled, row.protocol, row.secret)

    return await services.db.run(load)


def _nonces(request: Request) -> NonceCache:
    cache = getattr(request.app.state, "push_nonces", None)
    if cache is None:
        cache = request.app.state.push_nonces = NonceCache()
    return cache


def _answer(status: int, body: dict[str, Any], retry: bool = False) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    return JSONResponse(body, status_code=status, headers=headers)


def _open(
    ident: str,
    fields: tuple[int, str, str],
    key: str,
    now: float,
    skew_s: float,
    max_rows: int,
) -> tuple[ParsedRows, Any]:
    ts, nonce, data = fields
    batch = open_envelope(ident, ts, nonce, data, key, now, skew_s)
    rows = batch["readings"]
    if len(rows) > max_rows:
        raise PushError(413, f"{len(rows)} readings in one batch; at most {max_rows}")
    return parse_rows(rows), batch.get("batch_id")


def _out_of_range(point: Point, sample: Sample) -> bool:
    """A new value outside the instrument range: stored as a fault, and named in the answer."""
    value = sample.value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return not point.in_range(value) and not point.seen_before(sample.at)


ENVELOPE_SCHEMA = {
    "type": "object",
    "required": ["ident", "ts", "nonce", "data"],
    "properties": {
        "ident": {"type": "string", "description": "the identification code issued"},
        "ts": {"type": "integer", "description": "unix seconds; also sealed as associated data"},
        "nonce": {"type": "string", "description": "base64 of 12 random bytes, used once"},
        "data": {"type": "string", "description": "base64 of the AES-256-GCM ciphertext + tag"},
    },
}


@router.post(
    "/api/ingest/push",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ENVELOPE_SCHEMA}},
        }
    },
)
async def push(request: Request) -> JSONResponse:
    """An enterprise's sealed batch of readings (see the module doc for the answers)."""
    services: Services = request.app.state.services
    ingest = services.ingest
    if ingest is None:
        return _answer(503, {"detail": "sensor ingest is not running on this node"}, retry=True)
    settings = services.settings.ingest
    ident = ""
    try:
        try:
            raw = await read_limited(request, MAX_BYTES)
        except BodyTooLarge as exc:
            raise PushError(413, str(exc)) from None
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PushError(400, f"body is not JSON: {exc}") from None
        ident, ts, nonce, data = envelope_fields(body)
        gw = await _gateway(services, ident)
        if gw is None or gw.protocol != GatewayProtocol.http_push or not gw.key:
            raise PushError(401, f"no push gateway has the identification code {ident}")
        if not gw.enabled:
            raise PushError(403, f"the push gateway of {ident} is disabled")
        now = time.time()
        job = partial(
            _open,
            ident,
            (ts, nonce, data),
            gw.key,
            now,
            settings.push_max_skew_s,
            settings.push_max_rows,
        )
        parsed, batch_id = await asyncio.to_thread(job) if len(raw) > OFFLOAD_BYTES else job()
        if not _nonces(request).check_and_add(ident, nonce, now, settings.push_max_skew_s):
            raise PushError(409, "this envelope was already received (replay); seal it anew")
        # from here to submit() nothing awaits: the nonce and the rows go in together
        errors = list(parsed.errors)
        samples, index, faults = [], [], {}
        for sample, row in zip(parsed.samples, parsed.index, strict=True):
            point = ingest.registry.get(gw.org_id, sample.tag)
            if point is not None and point.gateway_id not in (None, gw.id):
                errors.append(RowError(row, sample.tag, "tag is collected by another gateway"))
                continue
            if point is not None and _out_of_range(point, sample):
                faults[row] = {"row": row, "tag": sample.tag, "value": sample.value}
            samples.append(sample)
            index.append(row)
        result = ingest.submit(gw.org_id, samples, source=f"push:{ident}")
    except PushError as exc:
        if exc.status != 400:
            log.warning("push refused", ident=ident, status=exc.status, reason=str(exc))
        return _answer(exc.status, {"detail": str(exc)})
    except IngestBusy as exc:
        return _answer(503, {"detail": f"{exc}; seal the batch again to resend"}, retry=True)
    ingest.gateway_state(gw.id, True)
    errors += [RowError(index[e.row], e.tag, e.error) for e in result.errors]
    errors.sort(key=lambda e: e.row)
    for e in errors:
        faults.pop(e.row, None)
    answer = {
        "batch_id": batch_id,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "late": result.late,
        "out_of_range": [faults[row] for row in sorted(faults)],
        "rejected": [e.as_dict() for e in errors],
    }
    if not await ingest.committed(result.ticket, COMMIT_WAIT_S):
        detail = "accepted but not stored yet (database unavailable); seal the batch again later"
        return _answer(503, {"detail": detail, **answer}, retry=True)
    return _answer(422 if errors else 200, answer)
