"""What every collector shares: the reconnect loop, hand-over of samples, point errors.

A collector knows its gateway only through a :class:`GatewaySpec` (a snapshot of the
gateway row and of its points' tags and sources), and the ingest service only through
:class:`~vms.ingest.samples.ReadingSink`; it never touches the database.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vms.config import IngestSettings
from vms.ingest.gateway_config import validate_point_source
from vms.ingest.samples import IngestBusy, ReadingSink, Sample, SubmitResult
from vms.logging import get_logger

log = get_logger("vms.ingest.collectors")

FIRST_RETRY_S = 0.5  # first reconnect delay; doubles up to ingest.reconnect_max_s
BUSY_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # while the ingest queue is full (last one repeats)
STABLE_AFTER_S = 60.0  # a session that lasted this long resets the back-off
ERROR_SUMMARY_MAX = 500  # characters of point errors shown in the gateway's last_error
ALIVE_EVERY_S = 5.0  # how often a gateway that delivers data refreshes its last_seen_at


class Backoff:
    """Exponential back-off between attempts: 0.5 s, 1 s, 2 s, ... up to ``max_s``."""

    def __init__(self, max_s: float, first_s: float = FIRST_RETRY_S) -> None:
        self.first_s = min(first_s, max_s)
        self.max_s = max_s
        self._next = self.first_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.first_s


class RateLimitedLog:
    """Log a recurring problem at most once per ``interval_s`` per key, with a count."""

    def __init__(
        self,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        logger: Any = None,
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.log = logger if logger is not None else log
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, **fields: Any) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            fields["suppressed"] = suppressed
        self.log.warning(message, **fields)
        return True


@dataclass(frozen=True)
class PointRef:
    """A point as a collector needs it: its tag and its validated source in the gateway."""

    pk: int
    tag: str
    source: dict[str, Any]


@dataclass
class GatewaySpec:
    """A snapshot of one gateway row and its points; a changed snapshot restarts the collector."""

    id: int
    org_id: int
    name: str
    protocol: str
    config: dict[str, Any]  # validated, defaults filled in
    points: list[PointRef] = field(default_factory=list)

    def fingerprint(self) -> str:
        return json.dumps(
            [
                self.org_id,
                self.protocol,
                self.config,
                sorted((p.pk, p.tag, p.source) for p in self.points),
            ],
            sort_keys=True,
            default=str,
        )

    @property
    def label(self) -> str:
        return f"{self.name} (gateway {self.id})"


class ConnectionLost(Exception):
    """The gateway, server or broker is unreachable: the gateway goes offline, then reconnects."""


class Collector:
    """Base of the protocol collectors: ``run()`` connects, serves and reconnects for ever.

    Subclasses implement :meth:`session` (connect, then serve until the connection is lost:
    return or raise one of ``connection_errors``) and may override :meth:`close`.  Any other
    exception is a bug: it propagates to the manager, which logs it and restarts.
    """

    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (
        ConnectionLost,
        OSError,
        TimeoutError,
    )

    def __init__(self, spec: GatewaySpec, sink: ReadingSink, settings: IngestSettings) -> None:
        self.spec = spec
        self.sink = sink
        self.settings = settings
        self.online = False
        self.error = ""  # the connection's error while offline
        self.point_errors: dict[str, str] = {}  # tag → why it has no value
        self.limited = RateLimitedLog()
        self.counters: dict[str, int] = {"samples": 0, "rejected": 0, "busy": 0, "sessions": 0}
        self.source = f"{spec.protocol}:{spec.id}"
        self._alive_at = 0.0
        self.points = self._valid_points()

    # --- configuration -----------------------------------------------------------------

    def _valid_points(self) -> list[PointRef]:
        """Points whose source parses; the others are reported as point errors."""
        valid = []
        for point in self.spec.points:
            try:
                source = validate_point_source(self.spec.protocol, point.source)
            except ValueError as exc:
                self.point_errors[point.tag] = str(exc)
                log.warning(
                    "point source invalid", gateway=self.spec.label, tag=point.tag, error=str(exc)
                )
                continue
            valid.append(PointRef(point.pk, point.tag, source))
        return valid

    # --- the reconnect loop ------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(self.settings.reconnect_max_s)
        while True:
            started = time.monotonic()
            self.counters["sessions"] += 1
            try:
                await self.session()
                error = "connection closed"
            except self.connection_errors as exc:
                error = self.describe(exc)
            finally:
                await self.close()
            if time.monotonic() - started > STABLE_AFTER_S:
                backoff.reset()
            delay = backoff.next()
            if self.online or error != self.error:
                log.warning("gateway offline", gateway=self.spec.label, error=error, retry_s=delay)
            self.set_online(False, error)
            await asyncio.sleep(delay)

    async def session(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Release the connection (called after every session, and when stopped)."""

    def describe(self, exc: BaseException) -> str:
        """A one-line reason for the gateway's ``last_error``."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if isinstance(exc, ConnectionLost) and text:
            return text  # our own words already
        name = type(exc).__name__
        return f"{name}: {text}" if text else name

    # --- state towards the ingest service ------------------------------------------------

    def set_online(self, online: bool, error: str = "") -> None:
        if online and not self.online:
            log.info("gateway online", gateway=self.spec.label, points=len(self.points))
            self._alive_at = time.monotonic()
        self.online = online
        self.error = "" if online else error
        self._report()

    def alive(self) -> None:
        """Data arrived: keep the gateway's ``last_seen_at`` moving (at most every few s)."""
        now = time.monotonic()
        if self.online and now - self._alive_at >= ALIVE_EVERY_S:
            self._alive_at = now
            self._report()

    def point_error(self, tag: str, error: str) -> None:
        """Record (or, with ``""``, clear) why a point has no value; logged once per change."""
        if self.point_errors.get(tag, "") == error:
            return
        if error:
            self.point_errors[tag] = error
            log.warning("point unreadable", gateway=self.spec.label, tag=tag, error=error)
        else:
            self.point_errors.pop(tag, None)
            log.info("point readable again", gateway=self.spec.label, tag=tag)
        self._report()

    def error_summary(self) -> str:
        if not self.point_errors:
            return ""
        parts = [f"{tag}: {err}" for tag, err in sorted(self.point_errors.items())]
        text = "; ".join(parts)
        if len(text) > ERROR_SUMMARY_MAX:
            text = text[: ERROR_SUMMARY_MAX - 20].rsplit(";", 1)[0] + f"; ({len(parts)} points)"
        return text

    def _report(self) -> None:
        if self.online:
            self.sink.gateway_state(self.spec.id, True, self.error_summary())
        else:
            self.sink.gateway_state(self.spec.id, False, self.error)

    async def submit(self, samples: list[Sample]) -> SubmitResult | None:
        """Hand samples to the ingest service; while it is full, wait and retry the same ones."""
        if not samples:
            return None
        attempt = 0
        while True:
            try:
                result = self.sink.submit(self.spec.org_id, samples, source=self.source)
                break
            except IngestBusy as exc:
                self.counters["busy"] += 1
                delay = BUSY_RETRY_S[min(attempt, len(BUSY_RETRY_S) - 1)]
                attempt += 1
                self.limited.warning(
                    "busy", "ingest busy, holding samples", gateway=self.spec.label, error=str(exc)
                )
                await asyncio.sleep(delay)
        self.counters["samples"] += result.accepted
        if result.errors:
            self.counters["rejected"] += len(result.errors)
            first = result.errors[0]
            self.limited.warning(
                "rejected",
                "readings rejected",
                gateway=self.spec.label,
                count=len(result.errors),
                tag=first.tag,
                error=first.error,
            )
        return result

    def status(self) -> dict[str, Any]:
        return {
            "gateway_id": self.spec.id,
            "protocol": self.spec.protocol,
            "online": self.online,
            "error": self.error,
            "point_errors": dict(self.point_errors),
            "points": len(self.points),
            **self.counters,
        }
