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
        s = services.settings
        self.pool = AnalyzerPool(
            s.analyzers,
            services.frames,
            models_dir=s.models_path,
            timezone=s.server.timezone,
            emit=self.emit,
        )
        self.resume = AlarmResume(services, self.pool)
        self.pool.resume = self.resume
        self._sweep: asyncio.Task[int] | None = None

    async def emit(self, event: AlarmEvent) -> None:
        sink = self.services.alarm_sink
        if sink is None:
            log.warning(
                "no alarm sink: alarm not stored",
                alarm_id=event.alarm_id,
                status=int(event.status),
                channel=event.channel_id,
                device_id=event.device_id,
                alarm_type=event.alarm_type,
            )
            return
        await sink.handle(event)

    async def configure(self, cid: ChannelRef, profile: str, raw: dict[str, Any]) -> bool:
        """Start (or restart) one camera's analysis from its stored config; False if refused."""
        try:
            await self.pool.configure(cid, profile, AnalysisConfig.model_validate(raw))
        except (ValidationError, ConfigRejected, ModelMissing, ManifestError) as exc:
            log.error("camera analysis not started", channel=str(cid), error=str(exc))
            return False
        return True

    async def apply(self, cid: ChannelRef, profile: str, config: AnalysisConfig) -> None:
        """A camera's analysis config was changed (and stored): start, restart or stop it.

        The seam where, with several analyzer hosts, the change goes to the camera's holder."""
        await self.pool.configure(cid, profile, config)

    async def start(self) -> None:
        await self.pool.start()
        self.services.analyzers = self.pool
        self.services.analysis = self
        if self.services.placement is not None:
            return  # an analyzer host of a cluster: cameras come with their leases
        for cid, profile, raw in await self.services.db.run(enabled_channels):
            await self.configure(cid, profile, raw)
        # alarms of cameras no longer analysed: cleared in the background (start not held up)
        self._sweep = asyncio.create_task(self.resume.sweep(), name="analyzer-alarm-sweep")

    async def stop(self) -> None:
        """Clean shutdown: active alarms are NOT cleared (see ``AnalyzerPool.stop``)."""
        await cancel_task(self._sweep)
        self.services.analyzers = None
        self.services.analysis = None
        await self.pool.stop()


def analyzer_factory(services: Services) -> AnalyzerComponent | None:
    """Factory for ``vms.components``: after the frame source (hub or bus) and alarm sink."""
    if not services.settings.analyzers.enabled:
        return None
    if services.frames is None:
        log.warning("analyzers enabled but no frame source (media hub): analysis off")
        return None
    return AnalyzerComponent(services)
