"""Periodic uplink records: Table 2 (device info: daily at ``uplink.table2_at``, on change,
and after a gap) and Table 3 (run status on the clock every ``uplink.table3_interval_s``,
10 minutes by default); when, is :mod:`vms.uplink.timing`.

Both are written to the outbox like alarms, so they survive restarts and receiver outages.
Whether Table 2 is due is decided from the outbox itself (the last Table 2 row per
receiver): no extra state.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Device, OutboxItem
from vms.logging import get_logger
from vms.services import Services
from vms.tasks import cancel_task

from . import outbox, tables
from .identity import SiteIdentity, site_identity, sites
from .timing import last_table2_point, next_slot, next_table2_point, parse_clock

log = get_logger("vms.uplink.scheduler")


def device_id(data_dir: Path) -> str:
    """DEVICE_ID: a uuid36 made once for this analysis device and kept in the data folder."""
    path = Path(data_dir) / "uplink" / "device_id"
    if path.is_file():
        value = path.read_text().strip()
        if len(value) == 36:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = str(uuid.uuid4())
    path.write_text(value + "\n")
    return value


def _healthy(part: Any) -> bool | None:
    """``part.healthy()`` if it has one, else ``part.stats()["healthy"]``; None = unknown."""
    fn = getattr(part, "healthy", None)
    if callable(fn):
        return bool(fn())
    stats = getattr(part, "stats", None)
    if callable(stats):
        try:
            value = stats()
        except TypeError:  # a per-channel stats(channel_id), e.g. the stream hub
            return None
        if isinstance(value, dict) and "healthy" in value:
            return bool(value["healthy"])
    return None


UNHEALTHY_STREAM_STATES = frozenset({"lost", "closed"})  # vms.media.hub Stream.state


def _analysed_channels(pool: Any, media: Any) -> list[Any]:
    """The cameras the pool analyses (``pool.stats()`` is keyed by camera), else all streams."""
    stats = getattr(pool, "stats", None)
    if callable(stats):
        value = stats()
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            return list(value)
    channels = getattr(media, "channels", None)
    return list(channels()) if callable(channels) else []


def run_status(
    services: Services, devices: set[str] | None = None, session: Session | None = None
) -> bool:
    """RUN_STATUS: True when the analyzer pool runs and every stream it analyses is healthy.

    No analyzer pool → 0 (the device is not analysing).  The pool is unhealthy when its
    ``healthy()`` (or ``stats()["healthy"]``) says so; a stream when the hub has none for an
    analysed camera, reports ``healthy: False``, or its state is lost/closed.  With
    ``devices`` (a site's device IDs) only that site's cameras count.  On a clustered control
    node (``session`` given) the cluster's leases decide instead.
    """
    pool = services.analyzers
    if pool is None and services.cluster is not None and session is not None:
        # a control node: the analyzers run on other hosts (vms.cluster), their leases say
        from vms.cluster.status import analysis_running

        return analysis_running(session, services.settings.cluster.lease_ttl_s, devices)
    if pool is None or _healthy(pool) is False:
        return False
    media = services.media
    if media is None:
        return True
    verdict = getattr(media, "healthy", None)
    if callable(verdict):
        return bool(verdict())
    for ch in _analysed_channels(pool, media):
        if devices is not None and getattr(ch, "device_id", None) not in devices:
            continue
        st = media.stats(ch)
        if not isinstance(st, dict) or st.get("healthy") is False:
            return False
        if st.get("state") in UNHEALTHY_STREAM_STATES:
            return False
    return True


def site_devices(session: Session, org_id: int) -> set[str]:
    return set(session.scalars(select(Device.device_id).where(Device.org_id == org_id)))


class UplinkScheduler:
    name = "uplink-scheduler"

    def __init__(self, services: Services, wake: Any = None) -> None:
        self.services = services
        self.settings = services.settings
        self._wake = wake
        self._task: asyncio.Task[None] | None = None
        self.device_id = device_id(self.settings.server.data_dir)
        self.tz = ZoneInfo(self.settings.server.timezone)
        self._uncoded: set[int] = set()  # sites logged for having no code

    def _receivers(self, table: str) -> list[str]:
        attr = f"{table}_url"
        return [r.name for r in self.settings.uplink.receivers if getattr(r, attr)]

    def identities(self, session: Session) -> list[SiteIdentity]:
        """Each site's identity; a site without COMPANY_CODE is logged once and left out."""
        out = []
        for org in sites(session):
            ident = site_identity(
                self.device_id,
                org,
                self.settings.analyzers.device_code,
                self.settings.uplink.company_code,
            )
            if ident.company_code:
                out.append(ident)
            elif org.id not in self._uncoded:
                self._uncoded.add(org.id)
                log.error("site without a code: no Table 2/3 for it", org_id=org.id, name=org.name)
        return out

    def enqueue_table2(
        self, session: Session, force: bool = False, now: datetime | None = None
    ) -> int:
        """Table 2 per site to each receiver with none since the last daily point, or an
        older one than the site's info now."""
        up = self.settings.uplink
        now = now or outbox.now_utc()
        since = last_table2_point(now, parse_clock(up.table2_at), self.tz)
        count = 0
        for ident in self.identities(session):
            payload = tables.table2(
                ident.device_id, ident.device_code, ident.company_code, up.device_name,
                up.device_desc,
            )  # fmt: skip
            key = f"table2-{ident.org_id}"
            due = []
            for name in self._receivers(tables.TABLE2):
                last = session.scalar(
                    select(OutboxItem)
                    .where(
                        OutboxItem.receiver == name,
                        OutboxItem.table == tables.TABLE2,
                        OutboxItem.ordering_key == key,
                    )
                    .order_by(OutboxItem.id.desc())
                    .limit(1)
                )
                stale = last is None or last.created_at < since
                if force or stale or last.payload != payload:
                    due.append(name)
            outbox.enqueue(session, due, tables.TABLE2, key, payload)
            count += len(due)
        return count

    def enqueue_table3(self, session: Session) -> int:
        """Table 3 per site: its analysis device's status from its own cameras."""
        names = self._receivers(tables.TABLE3)
        if not names:
            return 0
        count = 0
        for ident in self.identities(session):
            payload = tables.table3(
                ident.device_code,
                outbox.now_utc(),
                self.settings.server.timezone,
                run_status(self.services, site_devices(session, ident.org_id), session),
            )
            outbox.enqueue(session, names, tables.TABLE3, f"table3-{ident.org_id}", payload)
            count += len(names)
        return count

    async def tick(self, table3: bool = True) -> None:
        def work(s: Session) -> int:
            keep = timedelta(seconds=self.settings.uplink.keep_sent_s)
            outbox.purge_sent(s, outbox.now_utc() - keep)
            return self.enqueue_table2(s) + (self.enqueue_table3(s) if table3 else 0)

        if await self.services.db.run(work) and self._wake is not None:
            self._wake()

    def next_wake(self, now: datetime) -> tuple[datetime, bool]:
        """(when to wake, whether for a Table 3 slot): the next slot or daily Table 2 point."""
        up = self.settings.uplink
        slot = next_slot(now, up.table3_interval_s, self.tz)
        daily = next_table2_point(now, parse_clock(up.table2_at), self.tz)
        return min(slot, daily), slot <= daily

    async def _run(self) -> None:
        table3 = True  # at start: the run status after a restart, then on the clock
        while True:
            try:
                await self.tick(table3)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep reporting on the next tick
                log.error("uplink schedule failed", error=repr(exc))
            wake, table3 = self.next_wake(outbox.now_utc())
            while (left := (wake - outbox.now_utc()).total_seconds()) > 0:
                await asyncio.sleep(left)  # a sleep may end a little early: never before

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="uplink-scheduler")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
