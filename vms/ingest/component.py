"""Wires the sensor side's readings path into the node: ``services.ingest``.

The collectors (``vms.ingest.collectors``) start after the service, so their first readings
find the points loaded; they stop first, so their last readings are flushed.
"""

from __future__ import annotations

from typing import Any

from vms.services import Services

from .service import IngestService


class IngestComponent:
    name = "ingest"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.service = IngestService(services.settings.ingest, services.db, services.events)
        services.ingest = self.service
        self.collectors: Any = None

    async def start(self) -> None:
        await self.service.start()
        try:
            from .collectors.manager import CollectorManager
        except ImportError:  # collectors not installed in this build
            return
        self.collectors = CollectorManager(self.services, self.service)
        await self.collectors.start()

    async def stop(self) -> None:
        if self.collectors is not None:
            await self.collectors.stop()
        await self.service.stop()


def ingest_factory(services: Services) -> IngestComponent | None:
    """Factory for ``vms.components``; None when ``ingest.enabled`` is off."""
    if not services.settings.ingest.enabled:
        return None
    return IngestComponent(services)
