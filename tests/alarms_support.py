"""Shared helpers of the alarm and uplink tests: a seeded site, settings, real pictures."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2

from analyzers.events import AlarmEvent, AlarmStatus
from sip.channel_ref import ChannelRef
from storage.db import Database
from storage.models import Channel, Device, OrgKind
from storage.org_tree import create_org
from vms.config import Settings, load_settings

from .testdata import vision

ENTERPRISE_CODE = "370102001"
STATION_CODE = "370102002"


def bus_jpeg() -> bytes:
    return (vision() / "bus.jpg").read_bytes()


def small_jpeg(width: int = 160) -> bytes:
    img = cv2.imread(str(vision() / "bus.jpg"))
    h = int(img.shape[0] * width / img.shape[1])
    ok, buf = cv2.imencode(".jpg", cv2.resize(img, (width, h)), [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def camera_code(enterprise_code: str, serial: int) -> str:
    return f"{enterprise_code}0132{serial:07d}"


@dataclass
class Site:
    county_id: int
    enterprise_id: int
    station_id: int
    other_enterprise_id: int
    cameras: list[str]  # enterprise cameras
    station_cameras: list[str]
    other_cameras: list[str]
    devices: dict[str, str] = field(default_factory=dict)  # channel id → its device's id

    def camera(self, channel_id: str) -> ChannelRef:
        """A seeded channel as the hub and the analyzers name it: (device, channel)."""
        return ChannelRef(self.devices[channel_id], channel_id)


def seed_site(db: Database, cameras: int = 3) -> Site:
    with db.session() as s:
        province = create_org(s, "山东省", OrgKind.province, None, "370000")
        city = create_org(s, "济南市", OrgKind.city, province, "370100")
        county = create_org(s, "历下区", OrgKind.county, city, "370102")
        ent = create_org(s, "示例化工", OrgKind.enterprise, county, ENTERPRISE_CODE)
        gas = create_org(s, "示例加油站", OrgKind.gas_station, county, STATION_CODE)
        other = create_org(s, "另一化工", OrgKind.enterprise, county, "370102003")
        site = Site(county.id, ent.id, gas.id, other.id, [], [], [])
        for org, code, target, dev in (
            (ent, ENTERPRISE_CODE, site.cameras, 1),
            (gas, STATION_CODE, site.station_cameras, 2),
            (other, "370102003", site.other_cameras, 3),
        ):
            device = Device(device_id=f"3701020000118{dev:07d}", name=f"NVR {dev}", org_id=org.id)
            s.add(device)
            s.flush()
            for i in range(1, cameras + 1):
                cid = camera_code(code, i)
                s.add(Channel(device_pk=device.id, channel_id=cid, name=f"cam {i}"))
                target.append(cid)
                site.devices[cid] = device.device_id
    return site


def make_settings(
    tmp_path: Path, receivers: list[dict[str, Any]] | None = None, db_url: str = "", **uplink: Any
) -> Settings:
    return load_settings(
        server={"data_dir": tmp_path / "data"},
        database={"url": db_url},
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
        uplink={
            "receivers": receivers or [],
            "retry_base_s": 0.05,
            "retry_max_s": 0.5,
            "poll_s": 0.2,
            **uplink,
        },
    )


def event(
    channel_id: str,
    status: int = 1,
    alarm_id: str | None = None,
    alarm_type: str = "9",
    profile: str = "enterprise",
    snapshot: bytes | None = None,
    at: datetime | None = None,
    raw: bytes = b"",
) -> AlarmEvent:
    return AlarmEvent(
        alarm_id=alarm_id or str(uuid.uuid4()),
        status=AlarmStatus(status),
        channel_id=channel_id,
        profile=profile,
        rule="no_helmet",
        alarm_type=alarm_type,
        at=at or datetime.now(UTC),
        snapshot_jpeg=bus_jpeg() if snapshot is None else snapshot,
        raw_jpeg=raw,
        detail={"score": 0.9},
    )


async def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate()`` until true; fail with ``what`` after ``timeout`` seconds."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
