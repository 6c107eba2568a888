"""What the simulated NVR holds and says: its catalog, info, status and recordings (no I/O)."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from . import manscdp
from .manscdp import CatalogItem, el

if TYPE_CHECKING:
    from .device import NvrConfig

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


def device_info_xml(config: NvrConfig, channels: int) -> str:
    return (
        el("DeviceName", config.name)
        + el("Manufacturer", config.manufacturer)
        + el("Model", config.model)
        + el("Firmware", config.firmware)
        + el("Channel", channels)
        + el("Result", "OK")
    )


def device_status_xml(tz: tzinfo) -> str:
    return (
        el("Result", "OK")
        + el("Online", "ONLINE")
        + el("Status", "OK")
        + el("Encode", "ON")
        + el("Record", "ON")
        + el("DeviceTime", manscdp.fmt_time(datetime.now(tz)))
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


def record_items_xml(channel_id: str, ranges: list[tuple[datetime, datetime]]) -> list[str]:
    return [
        "<Item>\r\n"
        + el("DeviceID", channel_id)
        + el("Name", f"录像{n}")
        + el("FilePath", f"{channel_id}_{s:%Y%m%d%H%M%S}")
        + el("Address", "Address")
        + el("StartTime", manscdp.fmt_time(s))
        + el("EndTime", manscdp.fmt_time(e))
        + el("Secrecy", 0)
        + el("Type", "time")
        + el("RecorderID", channel_id)
        + el("FileSize", int((e - s).total_seconds() * BYTES_PER_SECOND))
        + "</Item>\r\n"
        for n, (s, e) in enumerate(ranges)
    ]
