"""Which channel codes a device's catalog may claim: never one another device already has.

A device chooses the codes its catalog lists, so a hostile or misconfigured NVR could list
another enterprise's camera code.  Channels are keyed by (device, channel) everywhere, so
such a copy would only ever reach its own device; refusing it as well keeps channel codes
unambiguous for the superior platforms and the API (the first device to list a code keeps
it), and makes the attempt visible: each refused code is counted and logged once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Channel, Device
from vms.logging import get_logger

log = get_logger("vms.channel_claims")

CHUNK = 500  # ids per IN (...) query
LOGGED_MAX = 10_000  # (device, channel) pairs remembered so each is logged once


def claimed_elsewhere(s: Session, device: Device, channel_ids: Collection[str]) -> set[str]:
    """The ids that another device lists as a channel, or that are another device's own id."""
    wanted = sorted(set(channel_ids))
    taken: set[str] = set()
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i : i + CHUNK]
        taken.update(
            s.scalars(
                select(Channel.channel_id).where(
                    Channel.channel_id.in_(chunk), Channel.device_pk != device.id
                )
            )
        )
        taken.update(
            s.scalars(
                select(Device.device_id).where(Device.device_id.in_(chunk), Device.id != device.id)
            )
        )
    return taken


class RefusedChannels:
    """Counts the channel codes refused per device; logs each (device, code) once."""

    def __init__(self) -> None:
        self.by_device: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()

    @property
    def total(self) -> int:
        return sum(self.by_device.values())

    def add(self, device_id: str, channel_ids: Iterable[str]) -> int:
        fresh = sorted(set(channel_ids))
        self.by_device[device_id] += len(fresh)
        for channel_id in fresh:
            pair = (device_id, channel_id)
            if pair in self._logged or len(self._logged) >= LOGGED_MAX:
                continue
            self._logged.add(pair)
            log.warning(
                "catalog item refused: the channel belongs to another device",
                device_id=device_id,
                channel_id=channel_id,
            )
        return len(fresh)
