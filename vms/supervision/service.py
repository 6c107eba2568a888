"""``services.supervision``: keeps the daily offline figures current and makes the reports.

Everything hangs on :meth:`Supervision.run_due` with an explicit ``now``: record channel
status changes, bring today's and yesterday's figures up to date, then make every report
that is due and not stored yet (the newest weekly and monthly period whose due time has
passed, so a restart after the due time makes the missed one, once).  The background loop
calls it every ``supervision.interval_s`` with the injected clock; tests call it with
simulated times and never sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.db import Database
from storage.sensor_models import OfflineDaily
from vms.config import Settings
from vms.events import EventBus
from vms.logging import get_logger
from vms.tasks import cancel_task

from .channels import ChannelStatusTracker
from .figures import Limits, refresh_days
from .histories import StateCache
from .periods import KINDS, Period, latest_due, local_day, parse_time
from .reports import generate

log = get_logger("vms.supervision")

CATCH_UP_DAYS = 62  # at start, figures missing since the last stored day are made (≤ 2 months)
REPORT_EVENT = "supervision.report"


@dataclass(frozen=True)
class Made:
    """A report run_due found due: its row id, and whether this call made it."""

    report_id: int | None
    period: Period
    made: bool


class Supervision:
    """``services.supervision``: the job, its clock, and the state kept between runs."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        events: EventBus | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.supervision
        self.db = db
        self.events = events or EventBus()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.tz = ZoneInfo(settings.server.timezone)
        self.report_time = parse_time(self.cfg.report_time)
        self.limits = Limits.from_settings(settings)
        self.tracker = ChannelStatusTracker()
        self.cache = StateCache()
        self.figures_at: datetime | None = None
        self._refreshed_through: date | None = None  # the newest day refreshed
        self._tasks: list[asyncio.Task[None]] = []
        self._sync_lock = asyncio.Lock()

    # --- the job -----------------------------------------------------------------------

    async def run_due(self, now: datetime | None = None) -> list[Made]:
        """Channel states, figures, then the due reports, as of ``now`` (default: the clock)."""
        now = now or self.clock()
        await self.sync_channels(now)
        await self.refresh(now)
        due = [latest_due(kind, now, self.tz, self.report_time) for kind in KINDS]
        return [await self.make_report(period, now) for period in due]

    async def sync_channels(self, now: datetime | None = None) -> int:
        """Record catalog status changes (the loop and catalog updates take turns)."""
        at = now or self.clock()
        async with self._sync_lock:
            try:
                return await self.db.run(lambda s: self.tracker.sync(s, at))
            except BaseException:
                self.tracker.forget()
                raise

    async def refresh(self, now: datetime | None = None) -> int:
        """Bring the daily figures up to date: yesterday and today, and every day since the
        last successful refresh (since the newest stored day after a start, ≤ 62 days)."""
        now = now or self.clock()
        today = local_day(now, self.tz)
        first = today - timedelta(days=1)
        if self._refreshed_through is None:
            first = min(first, await self.db.run(lambda s: self._catch_up_from(s, today)))
        else:
            first = min(first, self._refreshed_through)

        def fn(s: Session) -> int:
            return refresh_days(s, first, today, now, self.tz, self.limits, self.cache)

        rows = await self.db.run(fn)
        if self._refreshed_through is None or today > self._refreshed_through:
            self._refreshed_through = today
        self.figures_at = now
        return rows

    def _catch_up_from(self, session: Session, today: date) -> date:
        last: date | None = session.scalar(select(func.max(OfflineDaily.day)))
        floor = today - timedelta(days=CATCH_UP_DAYS)
        return floor if last is None else max(floor, min(last, today))

    async def make_report(self, period: Period, now: datetime | None = None) -> Made:
        """The report of ``period``: made now unless stored (idempotent)."""
        now = now or self.clock()
        webhooks = list(self.settings.warning.webhooks)

        def fn(s: Session) -> tuple[int, bool]:
            report, made = generate(
                s, period, now, self.settings.server.timezone, self.cfg, webhooks
            )
            return report.id, made

        try:
            report_id, made = await self.db.run(fn)
        except IntegrityError:  # another node stored it between our check and our insert
            return Made(None, period, False)
        if made:
            log.info(
                "supervision report made",
                kind=period.kind,
                period_start=period.start.isoformat(),
                report_id=report_id,
            )
            self.events.publish(
                REPORT_EVENT,
                report_id=report_id,
                report_kind=period.kind,
                period_start=period.start.isoformat(),
                period_end=period.end.isoformat(),
            )
        return Made(report_id, period, made)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(), name="supervision"),
            asyncio.create_task(self._catalog_loop(), name="supervision-catalog"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_task(task)
        self._tasks = []

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception as exc:  # noqa: BLE001 - the database may be down: next round
                log.warning("supervision run failed", error=str(exc).splitlines()[0])
            await asyncio.sleep(self.cfg.interval_s)

    async def _catalog_loop(self) -> None:
        """A catalog answer may switch channels OFF or ON: date the change now, not later."""
        async with self.events.subscribe() as queue:
            while True:
                event = await queue.get()
                if event.kind != "catalog.updated":
                    continue
                try:
                    await self.sync_channels()
                except Exception as exc:  # noqa: BLE001 - the next refresh retries
                    log.warning("channel status sync failed", error=str(exc).splitlines()[0])
