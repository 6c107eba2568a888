"""What the simulated NVR holds and says: its catalog, info, status and recordings (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from sip import manscdp
from sip.manscdp import CatalogItem, DeviceInfo, DeviceStatusInfo, RecordItem

if TYPE_CHECKING:
    from .nvr import NvrConfig

BYTES_PER_SECOND = 250_000  # ~2 Mbit/s recordings, for FileSize / a=filesize


def catalog_items(config: NvrConfig, channels: list[str]) -> list[CatalogItem]:
    return [
        CatalogItem(
            device_id=ch,
            name=f"通道{n}-北门枪机" if n % 2 else f"通道{n}-罐区球机",
            manufacturer=config.manufacturer,
            model="SIM-IPC",
            civil_code=config.device_id[:6],
            parent_id=config.device_id,
            status="ON",
            longitude=117.0 + n / 1000,
            latitude=36.6 + n / 1000,
            ptz_type=1 if n % 2 == 0 else 3,
        )
        for n, ch in enumerate(channels, 1)
    ]


def overridden(item: CatalogItem, changes: dict[str, object] | None) -> CatalogItem:
    """An item with what a test changed on it (name, status, position)."""
    return replace(item, **changes) if changes else item  # type: ignore[arg-type]


def device_info(config: NvrConfig, channels: int) -> DeviceInfo:
    return DeviceInfo(
        config.device_id, config.name, config.manufacturer, config.model, config.firmware, channels
    )


def device_status(device_id: str, tz: tzinfo) -> DeviceStatusInfo:
    return DeviceStatusInfo(
        device_id,
        online="ONLINE",
        status="OK",
        encode="ON",
        record="ON",
        device_time=manscdp.fmt_time(datetime.now(tz)),
    )


def recordings(
    record_hours: float, tz: tzinfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Hour-long files over the last ``record_hours``, clipped to the query, newest first
    (devices answer unsorted; the platform must sort and merge)."""
    now = datetime.now(tz).replace(microsecond=0)
    out = []
    t = now - timedelta(hours=record_hours)
    while t < now:
        nxt = min(t + timedelta(hours=1), now)
        s, e = max(t, start), min(nxt, end)
        if s < e:
            out.append((s, e))
        t = nxt
    return list(reversed(out))


def record_items(channel_id: str, ranges: list[tuple[datetime, datetime]]) -> list[RecordItem]:
    return [
        RecordItem(
            device_id=channel_id,
            name=f"录像{n}",
            start=s,
            end=e,
            file_path=f"{channel_id}_{s:%Y%m%d%H%M%S}",
            type="time",
            file_size=int((e - s).total_seconds() * BYTES_PER_SECOND),
        )
        for n, (s, e) in enumerate(ranges)
    ]
