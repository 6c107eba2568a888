"""Positions for the map tests, on top of ``seed_cameras`` (tests/live_media.py): both
enterprises' cameras placed a few hundred metres apart, one camera of 甲化工 at 0/0 (no fix),
a sensor point of 甲化工 with its own position, and an installation of 乙加油站 whose
sensor has none of its own (it is placed at the installation)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from storage.models import Alarm, Channel, Device, Profile
from storage.sensor_models import Installation, InstallationKind, Sensor

from .live_media import CHANNEL_ID, DEVICE_ID, OTHER_CHANNEL_ID

A_POS = (117.2011, 36.6511)
B_POS = (117.2067, 36.6533)
SENSOR_POS = (117.2033, 36.6488)
INSTALLATION_POS = (117.2089, 36.6555)
UNPLACED_CHANNEL = "34020000001310000009"  # on 甲化工's NVR, reported at 0/0


def place(db: Any) -> dict[str, int]:
    """Set the positions; returns the ids of the sensor points and the installation."""
    with db.session() as s:
        for ch_id, (lon, lat) in ((CHANNEL_ID, A_POS), (OTHER_CHANNEL_ID, B_POS)):
            ch = s.scalar(select(Channel).where(Channel.channel_id == ch_id))
            ch.longitude, ch.latitude = lon, lat
        device = s.scalar(select(Device).where(Device.device_id == DEVICE_ID))
        device.channels.append(
            Channel(channel_id=UNPLACED_CHANNEL, name="门卫 Gate", longitude=0.0, latitude=0.0)
        )
        org_a = device.org_id
        org_b = s.scalar(
            select(Channel).where(Channel.channel_id == OTHER_CHANNEL_ID)
        ).device.org_id
        inst = Installation(
            org_id=org_b, kind=InstallationKind.tank_area, name="乙罐区 B tanks",
            longitude=INSTALLATION_POS[0], latitude=INSTALLATION_POS[1],
        )  # fmt: skip
        s.add(inst)
        s.flush()
        a_sensor = Sensor(
            org_id=org_a, tag="GT-A01", name="甲可燃气 A gas", kind="gas_combustible",
            longitude=SENSOR_POS[0], latitude=SENSOR_POS[1], level="orange",
        )  # fmt: skip
        b_sensor = Sensor(org_id=org_b, tag="GT-B01", name="乙可燃气 B gas", kind="gas_combustible")
        b_sensor.installation_id = inst.id
        s.add_all([a_sensor, b_sensor])
        s.flush()
        return {"a_sensor": a_sensor.id, "b_sensor": b_sensor.id, "installation": inst.id}


def raise_alarm(db: Any, channel_id: str, at: datetime | None = None, active: bool = True) -> str:
    """An alarm on the camera, as the alarm service stores it (no image)."""
    with db.session() as s:
        ch = s.scalar(select(Channel).where(Channel.channel_id == channel_id))
        alarm = Alarm(
            channel_pk=ch.id,
            org_id=ch.device.org_id,
            profile=Profile.enterprise,
            alarm_type="1",
            rule="fire",
            video_code=channel_id,
            device_code="VMS-AI-0001",
            raised_at=at or datetime.now(UTC),
            active=active,
        )
        s.add(alarm)
        s.flush()
        return alarm.alarm_id
