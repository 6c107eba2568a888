"""Wires alarms and the uplink into the node: ``services.alarms`` and ``services.uplink``.

Start order inside the component: uplink sender (so the alarm service can wake it),
image spool and event journal, webhooks, scheduler (Tables 2/3).  Stop in reverse.
"""

from __future__ import annotations

from vms.alarms.service import AlarmService
from vms.alarms.webhooks import WebhookNotifier
from vms.services import Services
from vms.uplink.scheduler import UplinkScheduler
from vms.uplink.sender import UplinkSender


class AlarmComponent:
    name = "alarms"

    def __init__(self, services: Services, spool_retry_s: float = 5.0) -> None:
        """``spool_retry_s``: how often spooled pictures and journaled events are retried."""
        self.services = services
        up = services.settings.uplink
        self.sender = UplinkSender(services)
        services.uplink = self.sender
        self.webhooks = WebhookNotifier(up.webhooks, up.webhook_token)
        self.alarms = AlarmService.from_services(services, spool_retry_s)
        self.alarms.webhooks = self.webhooks
        self.alarms.journal_retry_s = spool_retry_s
        services.alarms = self.alarms
        services.alarm_sink = self.alarms
        self.scheduler = UplinkScheduler(services, wake=self.sender.wake)

    async def start(self) -> None:
        await self.sender.start()
        self.alarms.start()
        await self.webhooks.start()
        await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.webhooks.stop()
        await self.alarms.stop()
        await self.sender.stop()


def alarm_component(services: Services) -> AlarmComponent:
    """Factory for ``vms.components``: always on (alarms must be recorded)."""
    return AlarmComponent(services)
