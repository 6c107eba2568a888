"""``IngestService``: every reading of every collector goes through :meth:`submit`.

Per row, in memory and on the event loop (a few microseconds): resolve the tag, refuse
what cannot be a reading (unknown tag, NaN, a time far in the future), skip exact
duplicates (the recent times of each point), flag values outside the instrument range as a
fault, keep rows not newer than the point's latest as history only — written only if their
(point, time) is not stored yet, so a batch resent after a restart is not doubled — check
the upload period, hand in-order values to the warning engine, add to the
1-min/1-h aggregates and to the write buffer.  A flush task writes the buffer in batches
(``COPY`` on PostgreSQL) together with the points' live state and their events; when the
database is down the rows wait in memory (bounded by ``ingest.queue_max``, beyond which
batches are refused with :class:`IngestBusy`), so nothing accepted is lost while the
process runs.  :meth:`committed` lets a caller (the HTTP push) answer only once its rows
are stored.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, select, update

from storage.db import Database
from storage.models import Organisation
from storage.sensor_models import (
    Quality,
    Reading,
    ReadingAggregate,
    Sensor,
    SensorEvent,
    SensorGateway,
)
from vms.config import IngestSettings
from vms.events import EventBus
from vms.logging import get_logger
from vms.tasks import cancel_task

from .aggregates import Aggregator, upsert_aggregates
from .points import Point, PointRegistry, load_points
from .samples import IngestBusy, RowError, Sample, SubmitResult
from .writer import ReadingRow, write_readings, write_readings_if_absent

log = get_logger("vms.ingest")

WRITE_RETRY_S = (0.5, 1.0, 2.0, 5.0)  # back-off while the database is down (last one repeats)
VALUES_EVENT = "sensor.values"  # one bus event per flush and organisation with fresh values
STATE_EVENT = "sensor.state"  # online/offline/fault/slow changes of a point


_sensors = Sensor.__table__
STATE_UPDATE = (
    update(_sensors)
    .where(_sensors.c.id == bindparam("pk"))
    .values(
        {
            name: bindparam(name)
            for name in (
                "online",
                "last_reading_at",
                "last_value",
                "level",
                "fault",
                "slow",
                "slow_count",
            )
        }
    )
)


class WarningObserver(Protocol):
    """The warning engine as the ingest path sees it (``vms.warning``)."""

    def observe(self, point: Point, at: datetime, value: float) -> None: ...

    def offline(self, point: Point, at: datetime) -> None: ...


class IngestService:
    """``services.ingest``."""

    def __init__(
        self,
        settings: IngestSettings,
        db: Database,
        events: EventBus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.db = db
        self.events = events or EventBus()
        self.clock = clock
        self.registry = PointRegistry()
        self.org_paths: dict[int, str] = {}
        self.warnings: WarningObserver | None = None
        self.aggregator = Aggregator()
        self._buffer: list[ReadingRow] = []
        self._late: list[ReadingRow] = []  # not newer than their point's latest: write if absent
        self._in_flight = 0  # rows of the write under way: still waiting, not yet stored
        self._sensor_events: list[dict[str, Any]] = []
        self._gateways: dict[int, tuple[bool, str, datetime | None]] = {}
        self._gateways_dirty: set[int] = set()  # reported since the last flush
        self._fresh: dict[int, dict[int, tuple[float, str, str]]] = {}  # org → pk → value
        self._ticket = 0
        self._committed = 0
        self._committed_cond = asyncio.Condition()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.counters = {
            "accepted": 0,
            "duplicates": 0,
            "late": 0,
            "rejected": 0,
            "out_of_range": 0,
            "slow": 0,
            "written": 0,
            "write_errors": 0,
            "refused_busy": 0,
        }

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.reload()
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="ingest-flush"),
            asyncio.create_task(self._supervise_loop(), name="ingest-supervise"),
            asyncio.create_task(self._refresh_loop(), name="ingest-refresh"),
            asyncio.create_task(self._retention_loop(), name="ingest-retention"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_task(task)
        self._tasks = []
        try:
            await self.flush(final=True)
        except Exception as exc:  # noqa: BLE001 - the database is gone: say what is lost
            log.error("ingest final flush failed", error=repr(exc), rows=len(self._buffer))

    async def reload(self) -> None:
        """Re-read points and organisation paths (after a sensor or gateway change)."""

        def load(s: Any) -> tuple[list[Point], dict[int, str]]:
            paths = dict(s.execute(select(Organisation.id, Organisation.path)).all())
            return load_points(s), paths

        points, paths = await self.db.run(load)
        self.registry.replace(points)
        self.org_paths = paths
        now = self.clock()
        for point in self.registry.by_pk.values():
            if point.online and not point.last_seen:
                point.last_seen = now  # online before a restart: offline_after_s of grace

    # --- the hot path ------------------------------------------------------------------

    def submit(self, org_id: int, samples: list[Sample], source: str = "") -> SubmitResult:
        """Validate and accept one batch of an enterprise's readings (see module doc)."""
        waiting = len(self._buffer) + len(self._late) + self._in_flight
        if waiting + len(samples) > self.settings.queue_max:
            self.counters["refused_busy"] += 1
            raise IngestBusy(f"{waiting} readings are waiting for the database; retry later")
        result = SubmitResult()
        now = self.clock()
        future_limit = datetime.fromtimestamp(now + self.settings.future_tolerance_s, UTC)
        registry = self.registry
        buffer = self._buffer
        late = self._late
        aggregate = self.aggregator.add
        fresh = self._fresh.setdefault(org_id, {})
        for i, sample in enumerate(samples):
            point = registry.get(org_id, sample.tag)
            if point is None:
                result.errors.append(RowError(i, sample.tag, "unknown tag"))
                continue
            error = _sample_error(sample, future_limit)
            if error:
                result.errors.append(RowError(i, sample.tag, error))
                continue
            at = sample.at
            if point.seen_before(at):
                result.duplicates += 1
                continue
            point.remember(at)
            value = float(sample.value)
            quality = sample.quality
            ts = at.timestamp()
            if point.last_at is not None and at <= point.last_at:
                # Not newer than the point's latest: history only, and possibly stored
                # already (a batch resent after our restart), so it is written only if absent.
                result.late += 1
                kept = Quality.late if point.in_range(value) else Quality.out_of_range
                late.append((point.pk, at, value, int(kept)))
                result.accepted += 1
                continue
            if not point.in_range(value):
                quality = Quality.out_of_range
                self._set_fault(point, "out_of_range", at, value)
            else:
                if point.fault:
                    self._set_fault(point, "", at, value)
                self._arrived(point, at, value, now)
                aggregate(point.pk, ts, value)
                if quality == Quality.good and self.warnings is not None:
                    self.warnings.observe(point, at, value)
                fresh[point.pk] = (value, at.isoformat(), point.level)
            buffer.append((point.pk, at, value, int(quality)))
            result.accepted += 1
        c = self.counters
        c["accepted"] += result.accepted
        c["duplicates"] += result.duplicates
        c["late"] += result.late
        c["rejected"] += len(result.errors)
        self._ticket += 1
        result.ticket = self._ticket
        if len(buffer) >= self.settings.batch_max:
            self._wake.set()
        return result

    def _arrived(self, point: Point, at: datetime, value: float, now: float) -> None:
        """An in-order reading: period check, online state, latest value."""
        if point.last_at is not None:
            gap = (at - point.last_at).total_seconds()
            limit = self.period_limit(point)
            if gap > limit * (1 + self.settings.period_tolerance) and not point.slow_flagged_gap:
                self._flag_slow(point, at, gap, limit)
            elif point.slow and gap <= limit:
                point.slow = False
                point.dirty = True
        point.slow_flagged_gap = False
        point.last_at = at
        point.last_value = value
        point.last_seen = now
        point.dirty = True
        if not point.online:
            point.online = True
            self._event(point, "online", at, {})

    def period_limit(self, point: Point) -> float:
        """The longest allowed time between two readings: 10 s in warning, else 5 min."""
        s = self.settings
        return s.alarm_period_s if point.level else s.normal_period_s

    def _flag_slow(self, point: Point, at: datetime, gap: float, limit: float) -> None:
        point.slow = True
        point.slow_count += 1
        point.slow_flagged_gap = True
        point.dirty = True
        self.counters["slow"] += 1
        self._event(point, "slow", at, {"gap_s": round(gap, 1), "limit_s": limit})

    def _set_fault(self, point: Point, fault: str, at: datetime, value: float) -> None:
        if point.fault == fault:
            return
        if fault:
            self.counters["out_of_range"] += 1
        point.fault = fault
        point.dirty = True
        detail = {"value": value, "range": [point.range_min, point.range_max]}
        self._event(point, "fault" if fault else "recovered", at, detail)

    def _event(self, point: Point, kind: str, at: datetime, detail: dict[str, Any]) -> None:
        self._sensor_events.append(
            {"sensor_pk": point.pk, "kind": kind, "at": at, "detail": detail}
        )
        self.events.publish(
            STATE_EVENT,
            sensor_id=point.pk,
            tag=point.tag,
            org_id=point.org_id,
            org_path=self.org_paths.get(point.org_id),
            state=kind,
            at=at.isoformat(),
            **detail,
        )

    def gateway_state(self, gateway_id: int, online: bool, error: str = "") -> None:
        """A collector's connection came up or went down; down → its points go offline."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        known = self._gateways.get(gateway_id)
        seen = now if online else (known[2] if known is not None else None)
        self._gateways[gateway_id] = (online, error, seen)
        self._gateways_dirty.add(gateway_id)
        if known is not None and known[0] == online and known[1] == error:
            return  # same state: only last_seen_at moves on (a push gateway's every batch)
        if not online:
            for point in self.registry.by_gateway.get(gateway_id, []):
                self.mark_offline(point, now, reason=error or "gateway offline")
        self._wake.set()

    def mark_offline(self, point: Point, at: datetime, reason: str) -> None:
        if not point.online:
            return
        point.online = False
        point.dirty = True
        self._event(point, "offline", at, {"reason": reason})
        if self.warnings is not None:
            self.warnings.offline(point, at)

    # --- waiting for the database ----------------------------------------------------

    async def committed(self, ticket: int, timeout: float = 30.0) -> bool:
        """True once every row accepted up to ``ticket`` is in the database."""
        self._wake.set()
        async with self._committed_cond:
            try:
                await asyncio.wait_for(
                    self._committed_cond.wait_for(lambda: self._committed >= ticket), timeout
                )
            except TimeoutError:
                return False
        return True

    # --- background work -----------------------------------------------------------

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - keep the rows, retry with back-off
                self.counters["write_errors"] += 1
                delay = WRITE_RETRY_S[min(failures, len(WRITE_RETRY_S) - 1)]
                failures += 1
                log.warning(
                    "ingest write failed", error=str(exc).splitlines()[0], rows=len(self._buffer)
                )
                await asyncio.sleep(delay)

    async def flush(self, final: bool = False) -> int:
        """Write buffered readings, closed aggregates, point state and events; rows written."""
        ticket = self._ticket
        rows, self._buffer = self._buffer, []
        late, self._late = self._late, []
        events, self._sensor_events = self._sensor_events, []
        buckets = self.aggregator.take(None if final else self.clock())
        dirty = [p for p in self.registry.by_pk.values() if p.dirty]
        for p in dirty:
            p.dirty = False
        states = [_state_row(p) for p in dirty]
        gateways = {gid: self._gateways[gid] for gid in self._gateways_dirty}
        self._gateways_dirty = set()
        fresh, self._fresh = self._fresh, {}
        taken = len(rows) + len(late)  # the write may drop the rows of deleted points
        self._in_flight += taken
        try:
            stored_late = await asyncio.to_thread(
                self._write, rows, late, buckets, states, events, gateways
            )
        except BaseException:
            self._buffer[:0] = rows
            self._late[:0] = late
            self._sensor_events[:0] = events
            self.aggregator.put_back(buckets)
            self._gateways_dirty |= gateways.keys()
            for p in dirty:
                p.dirty = True
            raise
        finally:
            self._in_flight -= taken
        self.counters["written"] += len(rows) + len(stored_late)
        self.counters["duplicates"] += len(late) - len(stored_late)
        async with self._committed_cond:
            self._committed = max(self._committed, ticket)
            self._committed_cond.notify_all()
        self._publish_values(fresh)
        return len(rows)

    def _write(
        self,
        rows: list[ReadingRow],
        late: list[ReadingRow],
        buckets: list[Any],
        states: list[dict[str, Any]],
        events: list[dict[str, Any]],
        gateways: dict[int, tuple[bool, str, datetime | None]],
    ) -> list[ReadingRow]:
        """One transaction; a point deleted meanwhile (its rows, open buckets and events would
        break the foreign key for ever) has its buffered data dropped and the rest is written."""
        try:
            return self._write_once(rows, late, buckets, states, events, gateways)
        except Exception:
            pks = (
                {r[0] for r in rows}
                | {r[0] for r in late}
                | {k[0] for k, _ in buckets}
                | {e["sensor_pk"] for e in events}
            )
            with self.db.engine.connect() as conn:  # raises again while the database is down
                known = set(conn.scalars(select(Sensor.id)))  # every id: no huge IN list
            gone = pks - known
            if not gone:
                raise
            log.info("dropping buffered data of deleted points", points=sorted(gone))
            rows[:] = [r for r in rows if r[0] not in gone]
            late[:] = [r for r in late if r[0] not in gone]
            buckets[:] = [b for b in buckets if b[0][0] not in gone]
            events[:] = [e for e in events if e["sensor_pk"] not in gone]
            states[:] = [st for st in states if st["pk"] not in gone]
            return self._write_once(rows, late, buckets, states, events, gateways)

    def _write_once(
        self,
        rows: list[ReadingRow],
        late: list[ReadingRow],
        buckets: list[Any],
        states: list[dict[str, Any]],
        events: list[dict[str, Any]],
        gateways: dict[int, tuple[bool, str, datetime | None]],
    ) -> list[ReadingRow]:
        """Everything in one transaction; the late rows that were not stored yet."""
        batch = self.settings.batch_max
        with self.db.engine.begin() as conn:
            for i in range(0, len(rows), batch):
                write_readings(conn, rows[i : i + batch])
            stored_late = write_readings_if_absent(conn, late)
            upsert_aggregates(conn, buckets)
            upsert_aggregates(conn, _late_buckets(stored_late))
            if states:
                conn.execute(STATE_UPDATE, states)
            if events:
                conn.execute(SensorEvent.__table__.insert(), events)
            for gid, (online, error, seen) in gateways.items():
                values: dict[str, Any] = {"online": online, "last_error": error}
                if seen is not None:
                    values["last_seen_at"] = seen
                conn.execute(update(SensorGateway).where(SensorGateway.id == gid).values(values))
        return stored_late

    def _publish_values(self, fresh: dict[int, dict[int, tuple[float, str, str]]]) -> None:
        for org_id, values in fresh.items():
            if not values:
                continue
            self.events.publish(
                VALUES_EVENT,
                org_id=org_id,
                org_path=self.org_paths.get(org_id),
                values=[
                    {"sensor_id": pk, "value": v, "at": at, "level": level}
                    for pk, (v, at, level) in values.items()
                ],
            )

    async def _supervise_loop(self) -> None:
        """Offline detection and the upload-period check for points that fell silent."""
        step = min(self.settings.alarm_period_s / 2, 5.0)
        while True:
            await asyncio.sleep(step)
            self.supervise()

    def supervise(self) -> None:
        now = self.clock()
        at = datetime.fromtimestamp(now, UTC)
        tolerance = 1 + self.settings.period_tolerance
        for point in self.registry.by_pk.values():
            if not point.online or not point.last_seen:
                continue
            silent = now - point.last_seen
            if silent > self.settings.offline_after_s:
                self.mark_offline(point, at, reason=f"no reading for {silent:.0f} s")
                continue
            limit = self.period_limit(point)
            if silent > limit * tolerance and not point.slow_flagged_gap:
                self._flag_slow(point, at, silent, limit)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_s)
            try:
                await self.reload()
            except Exception as exc:  # noqa: BLE001 - keep the points we have
                log.warning("ingest reload failed", error=str(exc).splitlines()[0])

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.db.run(self.apply_retention)
            except Exception as exc:  # noqa: BLE001 - retried next round
                log.warning("ingest retention failed", error=str(exc).splitlines()[0])
            await asyncio.sleep(self.settings.retention_interval_s)

    def apply_retention(self, session: Any) -> int:
        now = datetime.fromtimestamp(self.clock(), UTC)
        raw_cut = now - timedelta(days=self.settings.retention_days)
        agg_cut = now - timedelta(days=self.settings.aggregate_retention_days)
        gone = session.execute(delete(Reading).where(Reading.at < raw_cut)).rowcount or 0
        session.execute(delete(ReadingAggregate).where(ReadingAggregate.bucket < agg_cut))
        return gone

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters,
            "points": len(self.registry),
            "online": sum(1 for p in self.registry.by_pk.values() if p.online),
            "buffered": len(self._buffer) + len(self._late) + self._in_flight,
        }


def _sample_error(sample: Sample, future_limit: datetime) -> str:
    value = sample.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"value must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"value must be a finite number, got {value!r}"
    at = sample.at
    if not isinstance(at, datetime) or at.tzinfo is None:
        return "time must be timezone-aware"
    if at > future_limit:
        return f"time {at.isoformat()} is in the future"
    return ""


def _late_buckets(rows: list[ReadingRow]) -> list[Any]:
    """Aggregates of the late rows just stored, merged into their (closed) buckets at once;
    out-of-range values stay out of the charts."""
    agg = Aggregator()
    for pk, at, value, quality in rows:
        if quality == Quality.late:
            agg.add(pk, at.timestamp(), value)
    return agg.take()


def _state_row(p: Point) -> dict[str, Any]:
    return {
        "pk": p.pk,
        "online": p.online,
        "last_reading_at": p.last_at,
        "last_value": p.last_value,
        "level": p.level,
        "fault": p.fault,
        "slow": p.slow,
        "slow_count": p.slow_count,
    }
