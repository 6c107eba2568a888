"""Wires offline supervision into the node: ``services.supervision``."""

from __future__ import annotations

from vms.services import Services

from .service import Supervision


class SupervisionComponent:
    name = "supervision"

    def __init__(self, services: Services) -> None:
        self.service = Supervision(services.settings, services.db, services.events)
        services.supervision = self.service

    async def start(self) -> None:
        await self.service.start()

    async def stop(self) -> None:
        await self.service.stop()


def supervision_factory(services: Services) -> SupervisionComponent | None:
    """Factory for ``vms.components``; None when ``supervision.enabled`` is off."""
    if not services.settings.supervision.enabled:
        return None
    return SupervisionComponent(services)
