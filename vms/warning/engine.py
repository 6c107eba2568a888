"""``WarningEngine`` (``services.warnings``): warning episodes from the readings, as they arrive.

The ingest path calls :meth:`observe` for every in-order good reading, on the event loop.
One episode per point while it is abnormal: opened when a level appears, escalated at once
when the level rises, downgraded only once a lower level held ``warning.downgrade_hold_s``,
cleared once normal held as long (the episode then stays open for handling until closed);
a re-raise before the clear belongs to the same episode.  Transition times are the readings'
own times.  ``point.level`` follows the episode (the ingest path asks for 10-s uploads then).

Decisions are made in memory and queued as :class:`~vms.warning.store.Op`; one writer task
applies them in order in worker threads, retrying while the database is down, so no
transition is lost or reordered.  At start the open episodes are read back from the database
(their clocks live there), so a restart neither duplicates nor forgets a warning.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from storage.db import Database
from vms.config import WarningSettings
from vms.events import EventBus
from vms.ingest.points import Point, PointRegistry
from vms.logging import get_logger
from vms.tasks import cancel_task

from .levels import LevelEvaluator
from .store import Effect, Op, WarningStore, load_open
from .table import LEVEL_NAMES, RANK

log = get_logger("vms.warning")

WRITE_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # back-off while the database is down (last repeats)
OPS_PER_TRANSACTION = 200


def transient(exc: BaseException) -> bool:
    """A database outage (retry) rather than an op the database refuses (drop it)."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OSError)


class Episode:
    __slots__ = ("warning_id", "raised_at")

    def __init__(self, warning_id: str, raised_at: datetime) -> None:
        self.warning_id = warning_id
        self.raised_at = raised_at


class Tracked:
    """One point as the engine follows it: its evaluator and its open episode."""

    __slots__ = ("levels", "episode", "rank", "quiet", "offline", "below", "seen")

    def __init__(self, levels: LevelEvaluator) -> None:
        self.levels = levels
        self.episode: Episode | None = None
        self.rank = 0  # the episode's level (0: no open episode)
        self.quiet = True  # no hold running, not offline: the fast path may skip the rest
        self.offline = False
        self.below: list[float | None] = [None] * 4  # since when at or below rank i (holds)
        self.seen: dict[int, tuple[str, float | None, float]] = {}  # rank → cause, thr, value

    def reset_holds(self) -> None:
        self.below = [None] * 4
        self.quiet = not self.offline


class WarningEngine:
    """Implements the ingest service's ``WarningObserver`` protocol (observe, offline)."""

    def __init__(
        self,
        settings: WarningSettings,
        db: Database,
        events: EventBus | None = None,
        *,
        registry: PointRegistry | None = None,
        clock: Callable[[], float] = time.time,
        timezone: str = "Asia/Shanghai",
        linkage: Any = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.events = events or EventBus()
        self.registry = registry
        self.clock = clock
        self.store = WarningStore(settings.webhooks, timezone)
        self.linkage = linkage  # vms.warning.linkage.Linkage, or None (no cameras)
        self.lock = asyncio.Lock()  # one writer at a time: engine ops and escalation ticks
        self.on_notices: list[Callable[[], None]] = []  # e.g. the notifier's wake
        self._tracked: dict[int, Tracked] = {}
        self._restored: dict[int, tuple[Episode, int, str]] = {}  # pk → episode not yet seen
        self._ops: deque[Op] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._solo = 0  # ops to apply one by one after a batch the database refused
        self._notices_seen = 0
        self.counters = {
            "opened": 0,
            "escalated": 0,
            "downgraded": 0,
            "cleared": 0,
            "write_errors": 0,
            "dropped_ops": 0,
        }

    @classmethod
    def for_bench(cls, db: Database, settings: WarningSettings, ingest: Any) -> WarningEngine:
        return cls(settings, db, ingest.events, registry=ingest.registry, clock=ingest.clock)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        restored = await self.db.run(load_open)
        for pk, warning_id, level, raised_at, cause in restored:
            self._restored[pk] = (Episode(warning_id, raised_at), RANK[level], cause)
        if self.registry is not None:
            for point in self.registry.by_pk.values():
                if point.pk in self._restored:
                    self._track(point, None)
                elif point.level:  # the column said so, but no episode is open any more
                    point.level = ""
                    point.dirty = True
        self._task = asyncio.create_task(self._write_loop(), name="warning-writer")
        log.info("warning engine started", open_warnings=len(restored))

    async def stop(self, timeout: float = 10.0) -> None:
        if self.linkage is not None:  # first: no snapshot result arrives after the drain
            await self.linkage.stop()
        if not await self.drain(timeout):
            log.error("warning transitions not stored at stop", pending=len(self._ops))
        await cancel_task(self._task)
        self._task = None

    async def drain(self, timeout: float = 30.0) -> bool:
        """True once every queued transition is committed (and its events published)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- the hot path ------------------------------------------------------------------

    def observe(self, point: Point, at: datetime, value: float) -> None:
        """One in-order good reading of ``point`` (synchronous, on the event loop)."""
        t = self._tracked.get(point.pk)
        if t is None or t.levels.thresholds is not point.thresholds:
            t = self._track(point, t)
        lv = t.levels
        if t.rank == 0 and t.quiet and lv.side == 0 and not lv.has_rate:
            if lv.enter_low < value < lv.enter_high:
                return  # normal and staying normal: the common case
        rank = lv.evaluate(at.timestamp(), value)
        if rank == t.rank and t.quiet:
            return
        self._change(point, t, at, value, rank)

    def offline(self, point: Point, at: datetime) -> None:
        """The point went silent: keep its episode (and clocks), note it in the history."""
        t = self._tracked.get(point.pk)
        if t is None or t.episode is None or t.offline:
            return
        t.offline = True
        t.reset_holds()
        self._enqueue(Op("offline", t.episode.warning_id, at, point.pk, point.org_id))

    def closed(self, warning_id: str) -> None:
        """A user closed an episode whose condition still held: follow the point afresh."""
        for pk, t in self._tracked.items():
            if t.episode is not None and t.episode.warning_id == warning_id:
                t.episode, t.rank = None, 0
                t.levels.reset()
                t.reset_holds()
                point = self.registry.by_pk.get(pk) if self.registry is not None else None
                if point is not None:
                    point.level = ""
                    point.dirty = True
        self._restored = {k: v for k, v in self._restored.items() if v[0].warning_id != warning_id}

    def open_warnings(self) -> dict[int, str]:
        """Point pk → warning id of every open (uncleared) episode followed in memory."""
        return {pk: t.episode.warning_id for pk, t in self._tracked.items() if t.episode}

    def notices_queued(self) -> None:
        """Something (the API, the escalator) queued notices: wake the notifier."""
        for wake in self.on_notices:
            wake()

    # --- decisions ---------------------------------------------------------------------

    def _track(self, point: Point, known: Tracked | None) -> Tracked:
        if known is not None and _same_config(known.levels, point):
            known.levels.thresholds, known.levels.overrides = point.thresholds, point.levels
            return known
        t = Tracked(LevelEvaluator(point, self.settings.deadband))
        if known is not None:  # thresholds changed: keep the episode, re-evaluate the value
            t.episode, t.rank, t.offline = known.episode, known.rank, known.offline
        restored = self._restored.pop(point.pk, None)
        if restored is not None:
            t.episode, t.rank, cause = restored
            t.levels.restore(cause)
            point.level = LEVEL_NAMES[t.rank]
        t.quiet = not t.offline
        self._tracked[point.pk] = t
        return t

    def _change(self, point: Point, t: Tracked, at: datetime, value: float, rank: int) -> None:
        ts = at.timestamp()
        lv = t.levels
        if rank:
            t.seen[rank] = (lv.cause, lv.threshold, value)
        if t.offline:
            t.offline = False
            if t.episode is not None:
                self._enqueue(Op("online", t.episode.warning_id, at, point.pk, point.org_id))
        if t.episode is None:
            if rank:
                self._open(point, t, at, value, rank)
            t.reset_holds()
            return
        if rank >= t.rank:
            if rank > t.rank:
                self._level(point, t, at, rank, "escalate")
            t.reset_holds()
            return
        below, hold = t.below, self.settings.downgrade_hold_s
        for target in range(t.rank):
            if target < rank:
                below[target] = None
            elif below[target] is None:
                below[target] = ts
        for target in range(t.rank):  # the lowest level that held long enough wins
            since = below[target]
            if since is not None and ts - since >= hold:
                if target == 0:
                    self._clear(point, t, at, value)
                else:
                    self._level(point, t, at, target, "downgrade")
                    for i in range(target, 4):
                        below[i] = None
                break
        t.quiet = not t.offline and all(b is None for b in below)

    def _open(self, point: Point, t: Tracked, at: datetime, value: float, rank: int) -> None:
        warning_id = str(uuid.uuid4())
        t.episode, t.rank = Episode(warning_id, at), rank
        point.level = LEVEL_NAMES[rank]
        point.dirty = True
        lv = t.levels
        detail = {"tag": point.tag, "name": point.name, "unit": point.unit, "kind": point.kind}
        self._enqueue(
            Op(
                "open",
                warning_id,
                at,
                point.pk,
                point.org_id,
                LEVEL_NAMES[rank],
                lv.cause,
                value,
                lv.threshold,
                tuple(point.cameras),
                detail,
            )
        )
        self.counters["opened"] += 1
        self._link(point, warning_id, at, "")

    def _level(self, point: Point, t: Tracked, at: datetime, rank: int, kind: str) -> None:
        assert t.episode is not None
        cause, threshold, value = t.seen.get(rank, (t.levels.cause, t.levels.threshold, None))
        t.rank = rank
        point.level = LEVEL_NAMES[rank]
        point.dirty = True
        op = Op(kind, t.episode.warning_id, at, point.pk, point.org_id, LEVEL_NAMES[rank])
        op.cause, op.value, op.threshold = cause, value, threshold
        op.cameras = tuple(point.cameras)
        self._enqueue(op)
        self.counters["escalated" if kind == "escalate" else "downgraded"] += 1
        if kind == "escalate":
            self._link(point, t.episode.warning_id, at, LEVEL_NAMES[rank])

    def _clear(self, point: Point, t: Tracked, at: datetime, value: float) -> None:
        assert t.episode is not None
        self._enqueue(Op("clear", t.episode.warning_id, at, point.pk, point.org_id, value=value))
        t.episode, t.rank = None, 0
        t.seen.clear()
        point.level = ""
        point.dirty = True
        self.counters["cleared"] += 1

    def _link(self, point: Point, warning_id: str, at: datetime, suffix: str) -> None:
        if self.linkage is not None and point.cameras:
            self.linkage.start(warning_id, at, list(point.cameras), suffix, self._enqueue)

    # --- the writer ----------------------------------------------------------------------

    def _enqueue(self, op: Op) -> None:
        self._ops.append(op)
        self._idle.clear()
        self._wake.set()

    async def _write_loop(self) -> None:
        failures = 0
        while True:
            if not self._ops:
                self._idle.set()
                await self._wake.wait()
                self._wake.clear()
                continue
            size = 1 if self._solo else OPS_PER_TRANSACTION
            batch = list(islice(self._ops, 0, size))
            try:
                async with self.lock:
                    effects = await self.db.run(lambda s, b=batch: self.store.apply(s, b))
            except Exception as exc:  # noqa: BLE001 - classified below, never lost silently
                if transient(exc):
                    self.counters["write_errors"] += 1
                    delay = WRITE_RETRY_S[min(failures, len(WRITE_RETRY_S) - 1)]
                    failures += 1
                    log.warning(
                        "warning write failed, retrying",
                        error=str(exc).splitlines()[0],
                        pending=len(self._ops),
                        retry_s=delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                if len(batch) > 1:  # find the op the database refuses, keep the others
                    self._solo = len(batch)
                    continue
                self.counters["dropped_ops"] += 1
                log.error("warning transition refused by the database", op=repr(batch[0]))
                effects = []
            failures = 0
            for _ in batch:
                self._ops.popleft()
            if self._solo:
                self._solo -= 1
            self.publish(effects)

    def publish(self, effects: list[Effect]) -> None:
        """Bus events of committed changes; wake the notifier when notices were queued."""
        for kind, data in effects:
            self.events.publish(kind, **data)
        if self.store.notices_queued != self._notices_seen:
            self._notices_seen = self.store.notices_queued
            self.notices_queued()


def _same_config(levels: LevelEvaluator, point: Point) -> bool:
    return (
        levels.thresholds == point.thresholds
        and levels.overrides == point.levels
        and levels.kind == point.kind
        and levels.span == (point.range_min, point.range_max)
    )
