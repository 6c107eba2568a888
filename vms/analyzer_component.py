"""Wires the analyzer pool into the node: ``services.analyzers``, cameras from the database.

Each channel whose ``analysis`` JSON has ``enabled: true`` is configured at start with its
device organisation's profile (enterprise or gas station); alarms go to
``services.alarms.handle`` (logged only when the node has no alarm service).  Alarms still
active from before a stop or crash are continued or cleared by ``vms.analyzer_resume``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from analyzers.config import AnalysisConfig
from analyzers.engine import ConfigRejected
from analyzers.events import AlarmEvent
from analyzers.manifest import ManifestError, ModelMissing
from analyzers.pool import AnalyzerPool
from sip import ids
from sip.channel_ref import ChannelRef
from storage.models import Channel, Device, Organisation, OrgKind
from vms.analyzer_resume import AlarmResume
from vms.logging import get_logger
from vms.services import Services
from vms.tasks import cancel_task

log = get_logger("vms.analyzers")


def profile_of(kind: OrgKind | None) -> str:
    return "gas_station" if kind == OrgKind.gas_station else "enterprise"


def enabled_channels(s: Session) -> list[tuple[ChannelRef, str, dict[str, Any]]]:
    """(camera, profile, analysis) for every camera with analysis switched on (a stored code
    that is not a 20-digit id is skipped: it was never a camera)."""
    rows = s.execute(
        select(Device.device_id, Channel.channel_id, Organisation.kind, Channel.analysis)
        .select_from(Channel)
        .join(Device, Channel.device_pk == Device.id)
        .outerjoin(Organisation, Device.org_id == Organisation.id)
        .order_by(Channel.id)
    )
    return [
        (ChannelRef(device_id, cid), profile_of(kind), dict(analysis))
        for device_id, cid, kind, analysis in rows
        if isinstance(analysis, dict)
        and analysis.get("enabled")
        and ids.is_gb_id(device_id)
        and ids.is_gb_id(cid)
    ]


class AnalyzerComponent:
    name = "analyzers"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.pool = AnalyzerPool(services.settings, services.media, emit=self.emit)
        self.resume = AlarmResume(services, self.pool)
        self.pool.resume = self.resume
        self._sweep: asyncio.Task[int] | None = None

    async def emit(self, event: AlarmEvent) -> None:
        if self.services.alarms is None:
            log.warning(
                "no alarm service: alarm not stored",
                alarm_id=event.alarm_id,
                status=int(event.status),
                channel=event.channel_id,
                device_id=event.device_id,
                alarm_type=event.alarm_type,
            )
            return
        await self.services.alarms.handle(event)

    async def start(self) -> None:
        await self.pool.start()
        self.services.analyzers = self.pool
        for cid, profile, raw in await self.services.db.run(enabled_channels):
            try:
                await self.pool.configure(cid, profile, AnalysisConfig.model_validate(raw))
            except (ValidationError, ConfigRejected, ModelMissing, ManifestError) as exc:
                log.error("camera analysis not started", channel=str(cid), error=str(exc))
        # alarms of cameras no longer analysed: cleared in the background (start not held up)
        self._sweep = asyncio.create_task(self.resume.sweep(), name="analyzer-alarm-sweep")

    async def stop(self) -> None:
        """Clean shutdown: active alarms are NOT cleared (see ``AnalyzerPool.stop``)."""
        await cancel_task(self._sweep)
        self.services.analyzers = None
        await self.pool.stop()


def analyzer_factory(services: Services) -> AnalyzerComponent | None:
    """Factory for ``vms.app.component_factories()``: after the media hub (it subscribes)."""
    if not services.settings.analyzers.enabled:
        return None
    if services.media is None:
        log.warning("analyzers enabled but no media hub: analysis off")
        return None
    return AnalyzerComponent(services)
