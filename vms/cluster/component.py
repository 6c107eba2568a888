"""Each clustered role's share of the cluster: the bus, the node row, the leases it keeps.

``control`` serves the media nodes' SIP requests, stores the analyzers' alarms and sends a
changed camera analysis to the analyzers; ``media`` INVITEs through the control node, pulls
and records the cameras it holds, and puts the keyframes of analysed ones on the bus;
``analyzer`` analyses the cameras it holds from those keyframes and sends alarms through
JetStream.  Every clustered node forwards its local events to the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from analyzers.config import AnalysisConfig
from sip import ids
from sip.channel_ref import ChannelRef
from storage.models import Channel, Device, DeviceStatus
from vms.cluster import bus as subjects
from vms.cluster.alarm_bus import AlarmConsumer, BusAlarmSink
from vms.cluster.bus import Bus
from vms.cluster.frames import BusFrames, FramePublisher
from vms.cluster.leases import LeaseKeeper
from vms.cluster.registry import Registry
from vms.cluster.remote_live import LiveGateway, RemoteLive
from vms.cluster.remote_sip import RemoteSip, SipGateway
from vms.events import Event
from vms.logging import get_logger
from vms.services import Services
from vms.tasks import cancel_task

log = get_logger("vms.cluster")

# events after which the cameras to pull or analyse may differ (device online/offline, a
# catalog, a camera's settings)
WANTED_CHANGES = ("device.", "catalog", "channel.")
RECEIVED_MAX = 1024


def node_name(services: Services) -> str:
    c = services.settings.cluster
    return c.node_name or f"{c.role}-{socket.gethostname()}-{os.getpid()}"


def analysed_channels(
    s: Session, online_only: bool = False
) -> dict[ChannelRef, tuple[str, dict[str, Any]]]:
    """Cameras with analysis on → (profile, stored config)."""
    from vms.analyzer_component import enabled_channels

    rows = {cid: (profile, raw) for cid, profile, raw in enabled_channels(s)}
    if online_only and rows:
        online = {
            ChannelRef(d, c)
            for d, c in s.execute(
                select(Device.device_id, Channel.channel_id)
                .join(Device, Channel.device_pk == Device.id)
                .where(Device.online.is_(True), Device.status == DeviceStatus.active)
            )
        }
        rows = {cid: v for cid, v in rows.items() if cid in online}
    return rows


def media_wanted(s: Session, analysed: set[ChannelRef] | None = None) -> list[ChannelRef]:
    """What the media nodes must pull: cameras to record (schedules aside) and to analyse
    (``analysed``: those of online devices, when the caller has read them already)."""
    from vms.recording.recorder import Recorder

    if analysed is None:
        analysed = set(analysed_channels(s, online_only=True))
    wanted = set(Recorder.eligible_channels(s)) | analysed
    return sorted(c for c in wanted if ids.is_gb_id(c.device_id))


def analysis_wanted(s: Session) -> list[ChannelRef]:
    return sorted(analysed_channels(s))


class Placement:
    """Which cameras this node holds (``services.placement``), by lease kind."""

    def __init__(self) -> None:
        self.keepers: dict[str, LeaseKeeper] = {}

    def holds(self, kind: str, channel: ChannelRef) -> bool:
        keeper = self.keepers.get(kind)
        return keeper is not None and channel in keeper.held

    def held(self, kind: str) -> set[ChannelRef]:
        keeper = self.keepers.get(kind)
        return set(keeper.held) if keeper else set()


class EventBridge:
    """This node's events to the others, and theirs into this node's event bus."""

    def __init__(
        self, bus: Bus, services: Services, node: str, on_remote: Callable[[str], None]
    ) -> None:
        self.bus = bus
        self.services = services
        self.node = node
        self.on_remote = on_remote  # told the kind of each event from another node
        # events we republished, by id, until our forwarder sees them: held, so the id
        # cannot be reused by a new local event meanwhile
        self._received: dict[int, Event] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bus.listen(subjects.EVENTS, self._remote)
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._forward(ready), name="cluster-events")
        await ready.wait()

    async def _forward(self, ready: asyncio.Event) -> None:
        async with self.services.events.subscribe() as queue:
            ready.set()
            while True:
                event: Event = await queue.get()
                if self._received.pop(id(event), None) is event:
                    continue
                payload = {"node": self.node, "kind": event.kind, "data": event.data}
                with contextlib.suppress(Exception):
                    await self.bus.publish(subjects.EVENTS, subjects.dumps(payload))

    def _remote(self, value: dict[str, Any]) -> None:
        if not isinstance(value, dict) or value.get("node") == self.node:
            return
        data = value.get("data") if isinstance(value.get("data"), dict) else {}
        kind = str(value.get("kind"))
        event = self.services.events.publish(kind, **data)
        self._received[id(event)] = event
        if len(self._received) > RECEIVED_MAX:  # the forwarder's queue dropped some: forget
            del self._received[next(iter(self._received))]
        self.on_remote(kind)

    async def stop(self) -> None:
        await cancel_task(self._task)


class ClusterNode:
    """The component: one per clustered node, its behaviour set by the role."""

    name = "cluster"

    def __init__(self, services: Services) -> None:
        self.services = services
        c = services.settings.cluster
        self.settings = c
        self.role = c.role
        self.node = node_name(services)
        host = c.media_host or services.settings.media.sdp_ip
        self.bus = Bus(c.nats_url, self.node)
        self.registry = Registry(services.db, self.node, self.role, host, c.lease_ttl_s)
        self.placement = Placement()
        self.events = EventBridge(self.bus, services, self.node, self._event)
        self.gateway: SipGateway | None = None
        self.consumer: AlarmConsumer | None = None
        self.sink: BusAlarmSink | None = None
        self.publisher: FramePublisher | None = None
        self.remote_sip: RemoteSip | None = None
        self.live_gateway: LiveGateway | None = None
        self._analysed: set[ChannelRef] = set()  # a media node's analysed cameras (online)
        self._loop: asyncio.Task[None] | None = None
        self.rounds = 0
        self._beat_ok = time.monotonic()  # the last heartbeat the database took

    # --- start/stop ----------------------------------------------------------------

    async def start(self) -> None:
        s = self.services
        await self.bus.connect()
        await s.db.run(lambda session: self.registry.heartbeat(session, {}))
        await self.events.start()
        if self.role == "control":
            if s.sip is None or s.alarms is None:
                raise RuntimeError("the control role needs the SIP server and the alarm service")
            self.gateway = SipGateway(self.bus, s.sip)
            await self.gateway.start()
            self.consumer = AlarmConsumer(self.bus, s.alarms)
            await self.consumer.start()
            s.analysis = RemoteAnalysis(self.bus)
            if s.live is None:  # viewers' offers go to the camera's media node
                s.live = RemoteLive(self.bus, self.registry)  # type: ignore[assignment]
        elif self.role == "media":
            self.remote_sip = RemoteSip(
                self.bus,
                self.node,
                self.settings.request_timeout_s,
                s.settings.sip.invite_timeout_s,
            )
            await self.remote_sip.start()
            s.sip = self.remote_sip  # type: ignore[assignment]
            self.placement.keepers["media"] = LeaseKeeper(
                self.registry, "media", "media", self._media_wanted, self._media_changed
            )
        elif self.role == "analyzer":
            await self.bus.ensure_alarm_stream()
            self.sink = BusAlarmSink(self.bus, s.settings.server.data_dir / "alarm-bus-spool")
            await self.sink.start()
            s.frames = BusFrames(self.bus, self.settings.frame_queue)
            s.alarm_sink = self.sink
            self.placement.keepers["analysis"] = LeaseKeeper(
                self.registry, "analysis", "analyzer", analysis_wanted, self._analysis_changed
            )
            await self.bus.listen(subjects.ANALYSIS_APPLY, self._apply)
        s.placement = self.placement
        s.cluster = self
        self._loop = asyncio.create_task(self._run(), name="cluster-heartbeat")

    async def stop(self) -> None:
        await cancel_task(self._loop)
        for keeper in self.placement.keepers.values():
            await keeper.drop_all()
        with contextlib.suppress(Exception):
            await self.services.db.run(self.registry.leave)
        if self.publisher is not None:
            await self.publisher.stop()
        for part in (self.consumer, self.sink):
            if part is not None:
                await part.stop()
        await self.events.stop()
        await self.bus.close()

    def _event(self, kind: str) -> None:
        if kind.startswith(WANTED_CHANGES):
            for keeper in self.placement.keepers.values():
                keeper.invalidate()

    # --- every heartbeat -----------------------------------------------------------

    async def _run(self) -> None:
        every = self.settings.heartbeat_s
        while True:
            try:
                await self.round()
            except Exception as exc:  # noqa: BLE001 - the database may be away: next round
                log.warning("cluster round failed", error=repr(exc))
                await self._fence()
            await asyncio.sleep(every)

    async def _fence(self) -> None:
        """No heartbeat for a lease TTL: the others count this node dead and take its
        cameras, so it lets them go too (no camera pulled or analysed twice)."""
        silent = time.monotonic() - self._beat_ok
        if silent < self.settings.lease_ttl_s or not any(
            k.held for k in self.placement.keepers.values()
        ):
            return
        log.error("no heartbeat for a lease TTL: cameras let go", silent_s=round(silent, 1))
        for keeper in self.placement.keepers.values():
            await keeper.drop_all()

    async def round(self) -> None:
        await self.services.db.run(lambda s: self.registry.heartbeat(s, self.load()))
        self._beat_ok = time.monotonic()
        if self.rounds > 0:  # the first round only announces us: we see the others first
            for keeper in self.placement.keepers.values():
                await keeper.round()
        self.rounds += 1
        if self.role == "media":
            await self._sync_publisher()
            if self.live_gateway is None and self.services.live is not None:
                self.live_gateway = LiveGateway(self.bus, self.node, self.services.live)
                await self.live_gateway.start()
        if self.gateway is not None:
            alive = set(await self.services.db.run(lambda s: self.registry.alive(s, "media")))
            await self.gateway.forget_nodes(alive)

    def load(self) -> dict[str, Any]:
        s = self.services
        out: dict[str, Any] = {k: len(v.held) for k, v in self.placement.keepers.items()}
        if s.media is not None:
            out["streams"] = len(s.media.channels())
        if s.analyzers is not None:
            out["analysed"] = len(s.analyzers.stats())
        if self.gateway is not None:
            out["dialogs"] = self.gateway.per_node()
        if self.consumer is not None:
            out["alarms_handled"] = self.consumer.handled
        if self.sink is not None:
            out["alarms_sent"] = self.sink.sent
            out["alarms_spooled"] = self.sink.spooled
        if self.publisher is not None:
            out["keyframes_published"] = self.publisher.published
        with contextlib.suppress(Exception):
            import psutil

            out["cpu_percent"] = psutil.Process().cpu_percent(None)
        return out

    # --- media role ----------------------------------------------------------------

    async def _media_changed(self, gained: set[ChannelRef], lost: set[ChannelRef]) -> None:
        recorder = self.services.recorder
        if recorder is not None:
            recorder.wake()
        await self._sync_publisher()

    def _media_wanted(self, s: Session) -> list[ChannelRef]:
        """:func:`media_wanted`, remembering which cameras are analysed: the publisher's
        set, read with the leases' wanted cameras instead of again every heartbeat."""
        self._analysed = set(analysed_channels(s, online_only=True))
        return media_wanted(s, self._analysed)

    async def _sync_publisher(self) -> None:
        media = self.services.media
        if media is None:
            return
        if self.publisher is None:
            self.publisher = FramePublisher(self.bus, media)
        self.publisher.sync(self.placement.held("media") & self._analysed)

    # --- analyzer role -------------------------------------------------------------

    async def _analysis_changed(self, gained: set[ChannelRef], lost: set[ChannelRef]) -> None:
        pool, control = self.services.analyzers, self.services.analysis
        if pool is None or control is None:
            return
        for channel in sorted(lost):  # handed over: its alarms stay for the next holder
            await pool.remove(channel, emit_clears=False)
        if gained:
            rows = await self.services.db.run(analysed_channels)
            for channel in sorted(gained):
                if channel not in rows:
                    continue
                profile, raw = rows[channel]
                try:
                    await control.apply(channel, profile, AnalysisConfig.model_validate(raw))
                except Exception as exc:  # noqa: BLE001 - a bad stored config: the others go on
                    log.error("camera analysis not started", channel=str(channel), error=str(exc))

    async def _apply(self, value: dict[str, Any]) -> None:
        channel = ChannelRef(str(value["device_id"]), str(value["channel_id"]))
        if not self.placement.holds("analysis", channel) or self.services.analysis is None:
            return  # another host's camera, or one the next lease round hands out
        config = AnalysisConfig.model_validate(value["config"])
        await self.services.analysis.apply(channel, str(value["profile"]), config)

    def status(self) -> dict[str, Any]:
        return {"node": self.node, "role": self.role, "load": self.load()}


class RemoteAnalysis:
    """On the control node: a changed camera analysis goes to whichever host analyses it."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def apply(self, cid: ChannelRef, profile: str, config: AnalysisConfig) -> None:
        value = {
            "device_id": cid.device_id,
            "channel_id": cid.channel_id,
            "profile": profile,
            "config": config.model_dump(mode="json"),
        }
        await self.bus.publish(subjects.ANALYSIS_APPLY, subjects.dumps(value))


def cluster_factory(services: Services) -> ClusterNode | None:
    """Factory for ``vms.components``: only in a clustered role."""
    if services.settings.cluster.role == "all":
        return None
    return ClusterNode(services)
