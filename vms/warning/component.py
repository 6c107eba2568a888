"""Wires the warning side into the node: ``services.warnings`` on the ingest path.

Starts after the ingest component (its points are loaded, so open episodes find them) and
attaches itself as the ingest service's warning observer; stops first, so the last
transitions are stored before the ingest service's final flush.
"""

from __future__ import annotations

import asyncio
import time

from vms.logging import get_logger
from vms.services import Services
from vms.tasks import cancel_task

from .engine import WarningEngine
from .escalation import Escalator
from .linkage import Linkage
from .notifier import Notifier

log = get_logger("vms.warning")


class WarningComponent:
    name = "warnings"

    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        ingest = services.ingest
        self.linkage = Linkage(
            lambda: services.media, services.objects, settings.warning.snapshot_timeout_s
        )
        self.engine = WarningEngine(
            settings.warning,
            services.db,
            services.events,
            registry=ingest.registry if ingest is not None else None,
            clock=ingest.clock if ingest is not None else time.time,
            timezone=settings.server.timezone,
            linkage=self.linkage,
        )
        self.escalator = Escalator(self.engine)
        self.notifier = Notifier(settings.warning, services.db)
        self.engine.on_notices.append(self.notifier.wake)
        self.engine.escalator = self.escalator  # type: ignore[attr-defined]
        services.warnings = self.engine
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.engine.start()
        if self.services.ingest is not None:
            self.services.ingest.warnings = self.engine
        await self.notifier.start()
        self._ticker = asyncio.create_task(self._tick_loop(), name="warning-escalation")

    async def _tick_loop(self) -> None:
        while True:
            try:
                fired = await self.escalator.tick()
                if fired:
                    log.info("escalation actions", count=len(fired))
            except Exception as exc:  # noqa: BLE001 - the database is down: next tick retries
                log.warning("escalation tick failed", error=str(exc).splitlines()[0])
            await asyncio.sleep(self.services.settings.warning.tick_s)

    async def stop(self) -> None:
        if self.services.ingest is not None and self.services.ingest.warnings is self.engine:
            self.services.ingest.warnings = None
        await cancel_task(self._ticker)
        self._ticker = None
        await self.engine.stop()
        await self.notifier.stop()


def warning_factory(services: Services) -> WarningComponent | None:
    """Factory for ``vms.components``; None when ``warning.enabled`` is off."""
    if not services.settings.warning.enabled:
        return None
    return WarningComponent(services)
