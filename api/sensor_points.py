"""What makes a point (位号) configuration valid, for the single-point API and the bulk import.

Two stages: the fields on their own (kinds, ordered thresholds inside the instrument range,
level overrides), then against the enterprise (its gateways — whose protocol decides what a
``source`` may hold — its installations, the cameras that may watch it).  Both return
``(field, message)`` pairs, so one bad row of a 500-row tag table names its field and the
other rows go on.

Cameras: a point may be watched by its own enterprise's cameras or by a camera of an
organisation above it (a park's or county's camera overlooking the site), never by another
enterprise's, and only by cameras the caller itself can see.  A code that several allowed
devices list (rows from before catalogs refused taken codes) is refused as ambiguous, never
linked to one of them by chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Channel, Device, Organisation
from storage.sensor_models import Installation, Sensor, SensorCamera, SensorGateway, WarningLevel
from vms.ingest.gateway_config import validate_point_source
from vms.ingest.points import DEFAULT_UNITS, THRESHOLD_KEYS, SensorKind

from .deps import Caller

ORDERED_THRESHOLDS = ("ll", "l", "h", "hh")  # low-low < low < high < high-high
AMBIGUOUS = -1  # a camera code several allowed devices list
LEVEL_CAUSES = (*THRESHOLD_KEYS, "state")
MAX_CAMERAS = 32
TAG_PATTERN = r"^[^\s,;]+$"  # no blanks, commas or semicolons: tags travel in CSV and lists

Errors = list[tuple[str, str]]


class PointFields(BaseModel):
    """A point's configuration as the API takes it (a body, or one row of an import)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    tag: str = Field(min_length=1, max_length=64, pattern=TAG_PATTERN)
    name: str = Field("", max_length=200)
    kind: SensorKind
    unit: str | None = Field(None, max_length=16)  # empty → the kind's usual unit
    range_min: float | None = None  # instrument range: a value outside is a fault
    range_max: float | None = None
    thresholds: dict[str, float | None] = {}  # hh, h, l, ll, rate (per minute)
    levels: dict[str, WarningLevel] = {}  # cause → level, overriding the default
    source: dict[str, Any] = {}  # where the gateway finds the value (per protocol)
    gateway_id: int | None = None
    installation_id: int | None = None
    cameras: list[str] = Field([], max_length=MAX_CAMERAS)  # GB codes of watching cameras
    enabled: bool = True
    longitude: float | None = Field(None, ge=-180, le=180)
    latitude: float | None = Field(None, ge=-90, le=90)


FIELDS = tuple(PointFields.model_fields)


class PointPatch(BaseModel):
    """Any field of a point but its enterprise; what is sent replaces what is stored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    tag: str | None = Field(None, min_length=1, max_length=64, pattern=TAG_PATTERN)
    name: str | None = Field(None, max_length=200)
    kind: SensorKind | None = None
    unit: str | None = Field(None, max_length=16)
    range_min: float | None = None
    range_max: float | None = None
    thresholds: dict[str, float | None] | None = None
    levels: dict[str, WarningLevel] | None = None
    source: dict[str, Any] | None = None
    gateway_id: int | None = None
    installation_id: int | None = None
    cameras: list[str] | None = Field(None, max_length=MAX_CAMERAS)
    enabled: bool | None = None
    longitude: float | None = Field(None, ge=-180, le=180)
    latitude: float | None = Field(None, ge=-90, le=90)


def _fmt(x: float) -> str:
    return f"{x:g}"


def cross_check(p: PointFields) -> Errors:
    """Checks across fields; fills the default unit and drops empty thresholds."""
    errors: Errors = []
    if p.unit is None or p.unit == "":
        p.unit = DEFAULT_UNITS.get(p.kind, "")
    lo, hi = p.range_min, p.range_max
    if lo is not None and hi is not None and lo >= hi:
        errors.append(("range_max", f"range_max {_fmt(hi)} must be above range_min {_fmt(lo)}"))
        lo = hi = None
    unknown = sorted(set(p.thresholds) - set(THRESHOLD_KEYS))
    if unknown:
        errors.append(("thresholds", f"unknown thresholds {unknown}: use {list(THRESHOLD_KEYS)}"))
    p.thresholds = {k: v for k, v in p.thresholds.items() if v is not None and k not in unknown}
    rate = p.thresholds.get("rate")
    if rate is not None and rate <= 0:
        errors.append(("thresholds.rate", "rate is a change per minute and must be above 0"))
    given = [(k, p.thresholds[k]) for k in ORDERED_THRESHOLDS if k in p.thresholds]
    for (k1, v1), (k2, v2) in zip(given, given[1:], strict=False):
        if v1 >= v2:
            errors.append((f"thresholds.{k2}", f"{k2} {_fmt(v2)} must be above {k1} {_fmt(v1)}"))
    for k, v in given:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            where = (
                f"[{_fmt(lo) if lo is not None else '-∞'}, {_fmt(hi) if hi is not None else '∞'}]"
            )
            errors.append((f"thresholds.{k}", f"{k} {_fmt(v)} lies outside the range {where}"))
    unknown = sorted(set(p.levels) - set(LEVEL_CAUSES))
    if unknown:
        errors.append(("levels", f"unknown causes {unknown}: use {list(LEVEL_CAUSES)}"))
    cameras = []
    for code in p.cameras:
        if not code or len(code) > 20:
            errors.append(("cameras", f"{code!r} is not a camera's GB code"))
        elif code not in cameras:
            cameras.append(code)
    p.cameras = cameras
    return errors


def parse_fields(data: dict[str, Any]) -> tuple[PointFields | None, Errors]:
    """Shape and cross-field checks of one point; errors as (field, message)."""
    try:
        p = PointFields.model_validate(data)
    except ValidationError as exc:
        return None, [
            (".".join(str(x) for x in e["loc"]) or "body", e["msg"]) for e in exc.errors()
        ]
    errors = cross_check(p)
    return (None if errors else p), errors


@dataclass
class Checked:
    """A point that passed every check: what to store."""

    fields: PointFields
    source: dict[str, Any]
    camera_pks: list[int] = field(default_factory=list)


class PointContext:
    """One enterprise's gateways, installations and the cameras allowed to watch its points,
    loaded once so that an import of hundreds of rows costs a handful of queries."""

    def __init__(self, caller: Caller, session: Session, org: Organisation) -> None:
        self.caller = caller
        self.session = session
        self.org = org
        self.gateways = {
            g.id: g
            for g in session.scalars(select(SensorGateway).where(SensorGateway.org_id == org.id))
        }
        self.installations = {
            i.id: i
            for i in session.scalars(select(Installation).where(Installation.org_id == org.id))
        }
        # GB code → channel pk; None = not allowed; AMBIGUOUS = on several allowed devices
        self._cameras: dict[str, int | None] = {}

    def tags(self) -> dict[str, int]:
        rows = self.session.execute(
            select(Sensor.tag, Sensor.id).where(Sensor.org_id == self.org.id)
        )
        return dict(rows.all())  # type: ignore[arg-type]

    def preload_cameras(self, codes: set[str]) -> None:
        wanted = sorted(codes - set(self._cameras))
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            rows = self.session.execute(
                select(Channel.id, Channel.channel_id, Organisation.path)
                .join(Device, Channel.device_pk == Device.id)
                .join(Organisation, Device.org_id == Organisation.id)
                .where(Channel.channel_id.in_(chunk))
                .order_by(Channel.id)
            )
            for pk, code, path in rows:
                if not self._allowed(path):
                    continue
                self._cameras[code] = pk if self._cameras.get(code) is None else AMBIGUOUS
            for code in chunk:
                self._cameras.setdefault(code, None)

    def _allowed(self, camera_org_path: str) -> bool:
        return self.org.path.startswith(camera_org_path) and self.caller.sees_path(camera_org_path)

    def check(self, p: PointFields) -> tuple[Checked | None, Errors]:
        errors: Errors = []
        source: dict[str, Any] = {}
        if p.gateway_id is not None:
            gw = self.gateways.get(p.gateway_id)
            if gw is None:
                errors.append(
                    ("gateway_id", f"gateway {p.gateway_id} is not one of this enterprise's")
                )
            else:
                try:
                    source = validate_point_source(gw.protocol, p.source)
                except ValueError as exc:
                    errors.append(("source", str(exc)))
        elif p.source:
            errors.append(("source", "a source needs a gateway_id (whose protocol it addresses)"))
        if p.installation_id is not None and p.installation_id not in self.installations:
            errors.append(
                (
                    "installation_id",
                    f"installation {p.installation_id} is not one of this enterprise's",
                )
            )
        self.preload_cameras(set(p.cameras))
        pks = []
        for code in p.cameras:
            pk = self._cameras.get(code)
            if pk is None:
                errors.append(("cameras", f"camera {code} not found for this enterprise"))
            elif pk == AMBIGUOUS:
                errors.append(("cameras", f"camera {code} is on several devices: not linked"))
            else:
                pks.append(pk)
        if errors:
            return None, errors
        return Checked(p, source, pks), []


def store(row: Sensor, checked: Checked) -> None:
    """Write a checked configuration into a (new or existing) row; live state is untouched."""
    p = checked.fields
    for name in FIELDS:
        if name not in ("cameras", "source", "kind", "levels"):
            setattr(row, name, getattr(p, name))
    row.kind = p.kind.value
    row.levels = {cause: level.value for cause, level in p.levels.items()}
    row.source = checked.source
    keep = [c for c in row.cameras if c.channel_pk in checked.camera_pks]
    have = {c.channel_pk for c in keep}
    row.cameras = keep + [
        SensorCamera(channel_pk=pk) for pk in checked.camera_pks if pk not in have
    ]


def current_fields(row: Sensor, cameras: list[str]) -> dict[str, Any]:
    """A stored point as the fields a PATCH is merged into."""
    data = {name: getattr(row, name) for name in FIELDS if name != "cameras"}
    data["cameras"] = cameras
    return data


def camera_codes(session: Session, sensor_pks: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for i in range(0, len(sensor_pks), 500):
        rows = session.execute(
            select(SensorCamera.sensor_pk, Channel.channel_id)
            .join(Channel, Channel.id == SensorCamera.channel_pk)
            .where(SensorCamera.sensor_pk.in_(sensor_pks[i : i + 500]))
            .order_by(Channel.channel_id)
        )
        for pk, code in rows:
            out.setdefault(pk, []).append(code)
    return out
