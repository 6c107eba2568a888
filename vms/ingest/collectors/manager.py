"""``CollectorManager``: one supervised collector per enabled gateway, kept in step with the DB.

Every ``ingest.refresh_s``, and at once on a ``gateway.updated`` bus event (the gateways API
publishes it after each change), the gateway rows are re-read; within a second of the ingest
registry being reloaded (a sensor changed) the points are compared again.  A new gateway gets
a collector, a changed one (its config, or its points' tags and sources as the ingest
registry holds them) is restarted, a removed or disabled one is stopped.  A collector that
crashes (a bug, not a lost connection: those it handles itself) is logged with its traceback
and started again with back-off; the node and the other gateways carry on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from storage.sensor_models import GatewayProtocol, SensorGateway
from vms.events import Event
from vms.ingest.gateway_config import validate_gateway_config
from vms.ingest.service import IngestService
from vms.logging import get_logger
from vms.services import Services
from vms.tasks import cancel_task

from .base import STABLE_AFTER_S, Backoff, Collector, GatewaySpec, PointRef
from .modbus import ModbusCollector
from .mqtt import MqttCollector
from .opcua import OpcUaCollector

log = get_logger("vms.ingest.collectors")

COLLECTORS: dict[str, type[Collector]] = {
    GatewayProtocol.modbus_tcp: ModbusCollector,
    GatewayProtocol.modbus_rtu: ModbusCollector,
    GatewayProtocol.opcua: OpcUaCollector,
    GatewayProtocol.mqtt: MqttCollector,
}
DISABLED = "disabled"
GATEWAY_UPDATED = "gateway.updated"  # bus event of api/routers/gateways.py after a change
REGISTRY_CHECK_S = 1.0  # how soon a reloaded point registry (a sensor changed) is applied


@dataclass
class _GatewayRow:
    id: int
    org_id: int
    name: str
    protocol: str
    config: dict[str, Any]
    enabled: bool
    online: bool
    last_error: str


@dataclass
class _Running:
    spec: GatewaySpec
    fingerprint: str
    task: asyncio.Task[None] | None = None
    collector: Collector | None = None
    crashes: int = 0


def _load_gateways(session: Any) -> list[_GatewayRow]:
    g = SensorGateway
    rows = session.execute(
        select(g.id, g.org_id, g.name, g.protocol, g.config, g.enabled, g.online, g.last_error)
        .where(g.protocol != GatewayProtocol.http_push)
        .order_by(g.id)
    )
    return [_GatewayRow(*row) for row in rows]


async def _gateway_updated(events: asyncio.Queue[Event], timeout: float) -> bool:
    """Wait up to ``timeout`` for bus events; True if one of them changed a gateway."""
    try:
        event = await asyncio.wait_for(events.get(), timeout)
    except TimeoutError:
        return False
    updated = event.kind == GATEWAY_UPDATED
    while not events.empty():  # a burst (an import, a flush's values) is one wake-up
        updated |= events.get_nowait().kind == GATEWAY_UPDATED
    return updated


class CollectorManager:
    def __init__(
        self,
        services: Services,
        ingest: IngestService,
        collectors: dict[str, type[Collector]] | None = None,
    ) -> None:
        self.services = services
        self.ingest = ingest
        self.settings = services.settings.ingest
        self.collectors = dict(COLLECTORS if collectors is None else collectors)
        self.running: dict[int, _Running] = {}
        self._task: asyncio.Task[None] | None = None
        self._config_errors: dict[int, str] = {}
        self._rows: list[_GatewayRow] = []
        self._registry_seen: object = None  # the registry's by_gateway map last applied

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_loop(), name="collectors-refresh")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        await asyncio.gather(*(self._stop(gid) for gid in list(self.running)))

    async def _refresh_loop(self) -> None:
        loop = asyncio.get_running_loop()
        async with self.services.events.subscribe() as events:
            next_read = loop.time() + self.settings.refresh_s
            while True:
                wait = max(0.0, min(REGISTRY_CHECK_S, next_read - loop.time()))
                updated = await _gateway_updated(events, wait)
                try:
                    if updated or loop.time() >= next_read:
                        next_read = loop.time() + self.settings.refresh_s
                        await self.refresh()
                    elif self.ingest.registry.by_gateway is not self._registry_seen:
                        await self.apply()
                except Exception as exc:  # noqa: BLE001 - keep the collectors we have
                    log.warning("collector refresh failed", error=str(exc).splitlines()[0])

    async def refresh(self) -> None:
        """Re-read the gateway rows, then :meth:`apply`."""
        self._rows = await self.services.db.run(_load_gateways)
        await self.apply()

    async def apply(self) -> None:
        """Bring the running collectors in line with the gateway rows and the registry."""
        self._registry_seen = self.ingest.registry.by_gateway
        wanted: dict[int, GatewaySpec] = {}
        for row in self._rows:
            if not row.enabled:
                if row.online or row.id in self.running or row.last_error != DISABLED:
                    self.ingest.gateway_state(row.id, False, DISABLED)
                continue
            spec = self._spec(row)
            if spec is not None:
                wanted[row.id] = spec
        for gid in [gid for gid in self.running if gid not in wanted]:
            log.info("gateway removed or disabled, stopping its collector", gateway_id=gid)
            await self._stop(gid)
        for gid, spec in wanted.items():
            fingerprint = spec.fingerprint()
            current = self.running.get(gid)
            if current is not None and current.fingerprint == fingerprint:
                continue
            if current is not None:
                log.info("gateway changed, restarting its collector", gateway=spec.label)
                await self._stop(gid)
            self._start(spec, fingerprint)

    def _spec(self, row: _GatewayRow) -> GatewaySpec | None:
        try:
            if row.protocol not in self.collectors:
                raise ValueError(f"no collector for protocol {row.protocol}")
            config = validate_gateway_config(row.protocol, row.config)
        except ValueError as exc:
            error = str(exc)
            if self._config_errors.get(row.id) != error:
                log.warning("gateway config invalid", gateway_id=row.id, name=row.name, error=error)
                self._config_errors[row.id] = error
            self.ingest.gateway_state(row.id, False, error)
            return None
        self._config_errors.pop(row.id, None)
        points = [
            PointRef(p.pk, p.tag, dict(p.source))
            for p in self.ingest.registry.by_gateway.get(row.id, [])
            if p.org_id == row.org_id  # tags are per enterprise: another's cannot be ours
        ]
        return GatewaySpec(row.id, row.org_id, row.name, str(row.protocol), config, points)

    def _start(self, spec: GatewaySpec, fingerprint: str) -> None:
        entry = _Running(spec, fingerprint)
        entry.task = asyncio.create_task(self._supervise(entry), name=f"collector-{spec.id}")
        self.running[spec.id] = entry

    async def _stop(self, gateway_id: int) -> None:
        entry = self.running.pop(gateway_id, None)
        if entry is not None:
            await cancel_task(entry.task)

    async def _supervise(self, entry: _Running) -> None:
        """Run one gateway's collector; after a crash start a fresh one, with back-off."""
        spec = entry.spec
        backoff = Backoff(self.settings.reconnect_max_s, first_s=1.0)
        while True:
            started = time.monotonic()
            try:
                entry.collector = self.collectors[spec.protocol](spec, self.ingest, self.settings)
                await entry.collector.run()
                error = "collector stopped by itself"
            except Exception as exc:
                entry.crashes += 1
                log.exception("collector crashed", gateway=spec.label, crashes=entry.crashes)
                error = f"collector crashed: {type(exc).__name__}: {str(exc)[:200]}"
            self.ingest.gateway_state(spec.id, False, error)
            if time.monotonic() - started > STABLE_AFTER_S:
                backoff.reset()
            await asyncio.sleep(backoff.next())

    def status(self) -> list[dict[str, Any]]:
        """What each collector is doing (for the API and for tests)."""
        out = []
        for gid, entry in sorted(self.running.items()):
            info: dict[str, Any] = {"gateway_id": gid, "crashes": entry.crashes}
            if entry.collector is not None:
                info.update(entry.collector.status())
            out.append(info)
        return out
