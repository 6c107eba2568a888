"""Bulk import of an enterprise's tag table (位号表): hundreds of points as CSV or JSON.

Every row is checked like a single point; the valid rows are stored and each bad one is
named (row, tag, field, error).  CSV is what the enterprise's spreadsheet exports: UTF-8
(with or without BOM) or GB18030, one header row, flat columns (see ``COLUMNS``);
protocol addresses as ``source.<field>`` columns (``source.address``, ``source.type``,
``source.node_id`` ...) or one ``source`` column of JSON; level overrides as
``levels.<cause>``; gateways and installations by id or by name/code.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import Organisation
from storage.sensor_models import Sensor

from ..deps import CallerDep, ServicesDep, SessionDep, require_roles
from ..sensor_access import (
    WRITERS,
    BodyTooLarge,
    invalid,
    read_limited,
    reload_ingest_async,
    site_org,
)
from ..sensor_points import Checked, PointContext, parse_fields, store

router = APIRouter(prefix="/api/sensors", tags=["sensors"])

MAX_BYTES = 8 * 1024 * 1024
MAX_ROWS = 10_000
THRESHOLD_COLUMNS = ("hh", "h", "l", "ll", "rate")
PLAIN_COLUMNS = (
    "tag",
    "name",
    "kind",
    "unit",
    "range_min",
    "range_max",
    "gateway_id",
    "installation_id",
    "enabled",
    "longitude",
    "latitude",
)
COLUMNS = (*PLAIN_COLUMNS, *THRESHOLD_COLUMNS, "gateway", "installation", "cameras", "source")
TRUE_WORDS = {"是": True, "否": False}


class RowProblem(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Outcome:
    created: int = 0
    updated: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, row: int, line: int | None, tag: str, fld: str, error: str) -> None:
        item: dict[str, Any] = {"row": row, "tag": tag, "field": fld, "error": error}
        if line is not None:
            item["line"] = line  # as the spreadsheet numbers it (header = line 1)
        self.rejected.append(item)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return raw.decode("gb18030")  # what a Chinese spreadsheet saves as "CSV"
        except UnicodeDecodeError:
            raise invalid([("body", "CSV must be UTF-8 or GB18030 text")]) from None


def csv_rows(raw: bytes) -> list[dict[str, Any]]:
    """Rows of a tag table as point dicts; an unknown column refuses the whole file."""
    reader = csv.DictReader(io.StringIO(_decode(raw)))
    header = [h.strip() for h in reader.fieldnames or []]
    if "tag" not in header or "kind" not in header:
        raise invalid([("body", "the CSV header needs at least the columns tag and kind")])
    unknown = [
        h for h in header if h not in COLUMNS and not h.startswith(("source.", "levels.")) and h
    ]
    if unknown:
        raise invalid([("body", f"unknown CSV columns {unknown}; known: {list(COLUMNS)}")])
    reader.fieldnames = header
    out = []
    for cells in reader:
        row: dict[str, Any] = {}
        for key, value in cells.items():
            if key is None or key == "":  # more cells than columns
                continue
            value = (value or "").strip()
            if value:
                row[key] = value
        out.append(_nest(row))
    return out


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat CSV cells → the shape of a JSON import row."""
    row: dict[str, Any] = {}
    for key, value in flat.items():
        if key in THRESHOLD_COLUMNS:
            row.setdefault("thresholds", {})[key] = value
        elif key.startswith(("source.", "levels.")):
            group, name = key.split(".", 1)
            row.setdefault(group, {})[name] = value
        elif key == "cameras":
            row["cameras"] = value.replace(";", " ").replace("|", " ").split()
        elif key == "enabled":
            row["enabled"] = TRUE_WORDS.get(value, value)
        elif key == "source":
            try:
                row["source"] = {**json.loads(value), **row.get("source", {})}
            except (json.JSONDecodeError, TypeError):
                row["source"] = value  # refused per row: a source is an object
        else:
            row[key] = value
    return row


def json_rows(raw: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid([("body", f"not JSON: {exc}")]) from None
    if isinstance(data, dict) and isinstance(data.get("points"), list):
        data = data["points"]
    if not isinstance(data, list):
        raise invalid([("body", 'JSON must be a list of points or {"points": [...]}')])
    return data


def _resolve(row: dict[str, Any], ctx: PointContext) -> dict[str, Any]:
    """Gateway and installation given by name (or code) → their ids."""
    row = dict(row)
    name = row.pop("gateway", None)
    if name is not None and "gateway_id" not in row:
        found = [g.id for g in ctx.gateways.values() if g.name == name]
        if len(found) != 1:
            raise RowProblem("gateway", f"{len(found) or 'no'} gateways named {name!r}")
        row["gateway_id"] = found[0]
    name = row.pop("installation", None)
    if name is not None and "installation_id" not in row:
        found = [i.id for i in ctx.installations.values() if name in (i.code, i.name)]
        if len(found) != 1:
            raise RowProblem("installation", f"{len(found) or 'no'} installations {name!r}")
        row["installation_id"] = found[0]
    return row


def import_points(
    ctx: PointContext, rows: list[Any], mode: str, lines: bool
) -> tuple[Outcome, list[tuple[int | None, Checked]]]:
    """Check every row; what to store, and what was refused."""
    outcome = Outcome()
    tags = ctx.tags()
    seen: dict[str, int] = {}
    cameras = {
        c
        for r in rows
        if isinstance(r, dict)
        for c in (r.get("cameras") or [])
        if isinstance(c, str)
    }
    ctx.preload_cameras(cameras)
    todo: list[tuple[int | None, Checked]] = []
    for i, raw in enumerate(rows):
        line = i + 2 if lines else None
        tag = raw.get("tag", "") if isinstance(raw, dict) else ""
        tag = tag if isinstance(tag, str) else ""
        if not isinstance(raw, dict):
            outcome.reject(i, line, "", "row", "a row must be an object")
            continue
        try:
            data = _resolve(raw, ctx)
        except RowProblem as exc:
            outcome.reject(i, line, tag, exc.field, str(exc))
            continue
        fields, errors = parse_fields(data)
        checked = None
        if fields is not None:
            checked, errors = ctx.check(fields)
        if checked is None:
            for fld, msg in errors:
                outcome.reject(i, line, tag, fld, msg)
            continue
        if tag in seen:
            outcome.reject(i, line, tag, "tag", f"tag repeated (first in row {seen[tag]})")
            continue
        seen[tag] = i
        existing = tags.get(tag)
        if existing is not None and mode == "create":
            outcome.reject(i, line, tag, "tag", "tag already exists (mode=upsert updates it)")
            continue
        todo.append((existing, checked))
    return outcome, todo


def _write(
    session: Session, org: Organisation, todo: list[tuple[int | None, Checked]], outcome: Outcome
) -> None:
    for existing, checked in todo:
        if existing is None:
            row = Sensor(org_id=org.id)
            session.add(row)
            outcome.created += 1
        else:
            row = session.get_one(Sensor, existing)
            outcome.updated += 1
        store(row, checked)
    session.commit()


@router.post(
    "/import",
    dependencies=[require_roles(*WRITERS)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        }
    },
)
async def import_sensors(
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    org_id: int | None = Query(None, description="the enterprise; empty → the caller's own"),
    mode: Literal["create", "upsert"] = Query("create", description="upsert: update known tags"),
) -> JSONResponse:
    """Body: CSV (``Content-Type: text/csv``) or JSON (a list of points, as for
    ``POST /api/sensors``, also with ``gateway``/``installation`` by name).  200 when every row
    was stored, 422 naming the refused rows while the valid ones are stored."""
    try:
        raw = await read_limited(request, MAX_BYTES)
    except BodyTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from None
    is_csv = "csv" in request.headers.get("content-type", "")

    def work() -> Outcome:
        org = site_org(caller, session, org_id)
        rows = csv_rows(raw) if is_csv else json_rows(raw)
        if len(rows) > MAX_ROWS:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, f"{len(rows)} rows; at most {MAX_ROWS} a request"
            )
        outcome, todo = import_points(PointContext(caller, session, org), rows, mode, is_csv)
        try:
            _write(session, org, todo, outcome)
        except IntegrityError:
            session.rollback()
            raise HTTPException(
                status.HTTP_409_CONFLICT, "a tag of this file was created meanwhile; import again"
            ) from None
        return outcome

    outcome = await anyio.to_thread.run_sync(work)
    if outcome.created or outcome.updated:
        await reload_ingest_async(services)
    body = {"created": outcome.created, "updated": outcome.updated, "rejected": outcome.rejected}
    return JSONResponse(body, status_code=422 if outcome.rejected else 200)
