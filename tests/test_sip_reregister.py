"""A device that registers again is a device (re)connecting: one running server, one simulated
NVR registering over and over — a reboot on the same transport, a new Call-ID after its
registration expired, then over TCP — is queried afresh each time (DeviceInfo, Catalog,
DeviceStatus), its stored channels follow its new catalog, and the live stream a viewer keeps
watching is INVITEd again on its new contact.  A plain refresh is none of that."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import func, select

from simdevice.nvr import NvrConfig, SimulatedNvr
from sip.channel_ref import ChannelRef
from sip.manscdp import CatalogItem, DeviceStatusInfo
from sip.message import new_call_id
from sip.registrar import connection_reason
from sip.registry import Registration
from sip.store import MemoryDeviceStore
from sip.transport import Peer
from storage.db import Database
from storage.models import Channel, Device, DeviceEvent
from storage.objects import LocalObjectStore
from vms.config import Settings
from vms.media.frames import AccessUnit, Gap, Subscription
from vms.media.hub import StreamHub
from vms.services import Services
from vms.sip_component import SipComponent

from .sip_support import wait_until

DEV = "34020000001180000055"
CH = [f"3402000000131{n:07d}" for n in range(1, 7)]  # c1 … c6
CAM = [ChannelRef(DEV, c) for c in CH]  # the cameras of the NVR
QUERIES = {"DeviceInfo", "Catalog", "DeviceStatus"}

# --- the decision, no I/O ----------------------------------------------------------------


def _reg(**kw: object) -> Registration:
    base: dict[str, object] = dict(
        device_id=DEV,
        peer=Peer("UDP", "10.0.0.7", 5060),
        contact=f"<sip:{DEV}@10.0.0.7:5060>",
        call_id="call-1",
        expires_at=100.0,
        last_seen=0.0,
        source=("UDP", "10.0.0.7", 5060),
        cseq=5,
    )
    base.update(kw)
    return Registration(**base)  # type: ignore[arg-type]


def test_connection_reason_tells_a_refresh_from_a_reconnection() -> None:
    udp = Peer("UDP", "10.0.0.7", 5060)
    assert connection_reason(_reg(), "call-1", 6, udp, 50.0) is None  # plain refresh
    # a keepalive from another port moves where requests go, not the REGISTER source
    assert (
        connection_reason(_reg(peer=Peer("UDP", "10.0.0.7", 40000)), "call-1", 6, udp, 50.0) is None
    )
    assert connection_reason(None, "call-1", 1, udp, 50.0) == "register"
    assert connection_reason(_reg(online=False), "call-1", 6, udp, 50.0) == "register-after-offline"
    assert connection_reason(_reg(), "call-1", 6, udp, 101.0) == "register-after-expiry"
    assert connection_reason(_reg(), "call-2", 1, udp, 50.0) == "register-new-call-id"
    tcp = Peer("TCP", "10.0.0.7", 5060)
    assert connection_reason(_reg(), "call-1", 6, tcp, 50.0) == "register-new-address"
    moved = Peer("UDP", "10.0.0.8", 5060)
    assert connection_reason(_reg(), "call-1", 6, moved, 50.0) == "register-new-address"
    new_port = Peer("UDP", "10.0.0.7", 5062)
    assert connection_reason(_reg(), "call-1", 6, new_port, 50.0) == "register-new-address"
    assert connection_reason(_reg(), "call-1", 5, udp, 50.0) == "register-cseq-restart"
    assert connection_reason(_reg(), "call-1", 1, udp, 50.0) == "register-cseq-restart"


async def test_memory_store_marks_unlisted_channels_off_and_keeps_the_status() -> None:
    store = MemoryDeviceStore({DEV: None})
    await store.save_catalog(DEV, [CatalogItem(CH[0]), CatalogItem(CH[1])], complete=True)
    await store.save_catalog(DEV, [CatalogItem(CH[1]), CatalogItem(CH[2])], complete=False)
    assert {c: i.status for c, i in store.devices[DEV].channels.items()} == dict.fromkeys(
        CH[:3], "ON"
    )  # a partial catalog proves nothing about what is missing
    await store.save_catalog(DEV, [CatalogItem(CH[2])], complete=True)
    statuses = {c: i.status for c, i in store.devices[DEV].channels.items()}
    assert statuses == {CH[0]: "OFF", CH[1]: "OFF", CH[2]: "ON"}
    await store.save_device_status(DEV, DeviceStatusInfo(DEV, "ONLINE", "OK"))
    status = store.devices[DEV].status
    assert status is not None and status.online == "ONLINE"


# --- one server, one device registering again and again ----------------------------------


@dataclass
class Watch:
    """A viewer that keeps reading the hub subscription in the background."""

    sub: Subscription
    units: list[AccessUnit] = field(default_factory=list)
    gaps: int = 0
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async for item in self.sub:
            if isinstance(item, AccessUnit):
                self.units.append(item)
            elif isinstance(item, Gap):
                self.gaps += 1


@dataclass
class Rig:
    services: Services
    sip: SipComponent
    hub: StreamHub

    def channels(self) -> dict[str, str]:
        with self.services.db.session() as s:
            rows = s.execute(
                select(Channel.channel_id, Channel.status)
                .join(Device, Channel.device_pk == Device.id)
                .where(Device.device_id == DEV)
            )
            return {cid: status for cid, status in rows}

    def device(self) -> Device | None:
        with self.services.db.session() as s:
            d = s.scalar(select(Device).where(Device.device_id == DEV))
            if d is not None:
                s.expunge(d)
            return d

    def status_answers(self) -> int:
        with self.services.db.session() as s:
            stmt = (
                select(func.count())
                .select_from(DeviceEvent)
                .join(Device, DeviceEvent.device_pk == Device.id)
                .where(Device.device_id == DEV, DeviceEvent.kind == "status")
            )
            return s.scalar(stmt) or 0


@asynccontextmanager
async def rig(settings: Settings, db_url: str) -> AsyncIterator[Rig]:
    db = Database(db_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    media = settings.media
    media.transport = "udp"
    media.rtp_port_min, media.rtp_port_max = 33000, 33999
    media.idle_close_s = 0
    sip = SipComponent(services)  # catalog_on_register is on by default
    hub = StreamHub(services)
    hub.retry_min_s, hub.retry_max_s = 0.2, 2.0
    try:
        await sip.start()
        await hub.start()
        yield Rig(services, sip, hub)
    finally:
        await hub.stop()
        await sip.stop()
        db.close()


def nvr_config(settings: Settings, port: int, channels: list[str], **kw: object) -> NvrConfig:
    return NvrConfig(
        device_id=DEV,
        server_id=settings.sip.server_id,
        server_domain=settings.sip.domain,
        server_host="127.0.0.1",
        server_port=port,
        password=settings.sip.password,
        channel_ids=channels,
        **kw,  # type: ignore[arg-type]
    )


async def boot(config: NvrConfig) -> SimulatedNvr:
    """A device that listens but registers only when the test says so (no refresh loop)."""
    nvr = SimulatedNvr(config)
    transports = ("udp",) if config.transport == "udp" else ("udp", "tcp")
    await nvr.endpoint.listen(config.local_host, 0, transports)
    return nvr


async def answered(r: Rig, nvr: SimulatedNvr, firmware: str, on: set[str], statuses: int) -> None:
    """The three queries reached the device, and its answers are in the database."""
    await wait_until(lambda: QUERIES <= set(nvr.state.queries), 20, "queries at the device")
    assert nvr.state.queries.count("Catalog") == 1
    want = {c: ("ON" if c in on else "OFF") for c in r.channels() | dict.fromkeys(on)}
    await wait_until(lambda: r.channels() == want, 20, f"channels {want}")
    await wait_until(lambda: r.status_answers() == statuses, 20, "DeviceStatus stored")
    device = r.device()
    assert device is not None and device.online and device.firmware == firmware
    assert device.model == "SIM-NVR-64"


async def resumed(r: Rig, nvr: SimulatedNvr, watch: Watch, old_call: str) -> str:
    """The watched stream runs again, INVITEd to ``nvr`` in a new dialog; its Call-ID."""
    stream = r.hub._live[CAM[0]]

    def new_session() -> bool:
        s = stream.session
        return s is not None and s.call_id != old_call and s.call_id in nvr.media.streams

    await wait_until(new_session, 20, "a new INVITE to the device's new contact")
    assert stream.session is not None
    call_id = stream.session.call_id
    seen = len(watch.units)
    await wait_until(lambda: len(watch.units) >= seen + 10, 20, "video from the new session")
    assert stream.session is not None and stream.session.call_id == call_id
    return call_id


async def test_device_registering_again_is_queried_and_its_stream_resumes(
    settings: Settings, db_url: str
) -> None:
    async with rig(settings, db_url) as r:
        server = r.sip.server
        port = server.port
        # 1. first registration, UDP
        nvr = await boot(nvr_config(settings, port, CH[:3], firmware="V1.0.0"))
        nvr_b: SimulatedNvr | None = None
        watch: Watch | None = None
        try:
            assert await nvr.register() == 200
            assert server.stats["connections"] == 1
            await answered(r, nvr, "V1.0.0", set(CH[:3]), 1)
            watch = Watch(r.hub.subscribe(CAM[0], "viewer"))
            watch.task = asyncio.create_task(watch.run())
            await wait_until(lambda: len(watch.units) >= 10, 20, "live video")
            stream = r.hub._live[CAM[0]]
            assert stream.session is not None
            first_call = stream.session.call_id

            # 2. the NVR reboots on the same transport and address: new Call-ID, new catalog
            nvr.state.queries.clear()
            nvr.agent.call_id = new_call_id("127.0.0.1")
            nvr.channels = [CH[0], CH[1], CH[3]]
            nvr.config.firmware = "V1.0.1"
            assert await nvr.register() == 200  # challenged again: a new registration
            assert server.stats["connections"] == 2
            await answered(r, nvr, "V1.0.1", {CH[0], CH[1], CH[3]}, 2)
            second_call = await resumed(r, nvr, watch, first_call)
            await wait_until(lambda: first_call not in nvr.media.streams, 10, "stale session BYE")

            # a plain refresh (same Call-ID, higher CSeq) is no reconnection
            nvr.state.queries.clear()
            assert await nvr.register(expires=1) == 200  # refresh, now expiring in 1 s
            assert server.stats["connections"] == 2 and nvr.state.queries == []
            assert stream.session is not None and stream.session.call_id == second_call

            # 3. the registration expires; the device comes back with a new Call-ID.  The pull
            # would now wait two minutes between INVITEs: only the reconnection can resume it.
            r.hub.retry_min_s = r.hub.retry_max_s = 120.0
            await wait_until(lambda: DEV not in server.registrations, 10, "expiry")
            await wait_until(lambda: not r.device().online, 10, "offline stored")  # type: ignore[union-attr]
            await wait_until(lambda: stream.session is None, 10, "session ended by expiry")
            nvr.agent.call_id = new_call_id("127.0.0.1")
            nvr.channels = [CH[0], CH[3], CH[4]]
            nvr.config.firmware = "V1.0.2"
            r.hub.retry_min_s, r.hub.retry_max_s = 0.2, 2.0
            assert await nvr.register() == 200
            assert server.stats["connections"] == 3
            await answered(r, nvr, "V1.0.2", {CH[0], CH[3], CH[4]}, 3)
            third_call = await resumed(r, nvr, watch, second_call)

            # 4. the device now registers over TCP (same Call-ID, next CSeq): a new address
            call_id, cseq = nvr.agent.call_id, next(nvr.agent.cseq)
            await nvr.stop(unregister=False)
            cfg = nvr_config(settings, port, [CH[0], CH[4], CH[5]], firmware="V1.0.3")
            cfg.transport = "tcp"
            nvr_b = await boot(cfg)
            nvr_b.agent.call_id, nvr_b.agent.cseq = call_id, itertools.count(cseq + 1)
            assert await nvr_b.register() == 200
            assert server.stats["connections"] == 4
            reg = server.registrations[DEV]
            assert reg.peer.transport == "TCP" and reg.call_id == call_id
            await answered(r, nvr_b, "V1.0.3", {CH[0], CH[4], CH[5]}, 4)
            await resumed(r, nvr_b, watch, third_call)
            device = r.device()
            assert device is not None and device.transport == "tcp"
            assert r.channels() == {
                CH[0]: "ON",
                CH[1]: "OFF",
                CH[2]: "OFF",
                CH[3]: "OFF",
                CH[4]: "ON",
                CH[5]: "ON",
            }
            assert watch.gaps >= 3  # the viewer was told of each break, and kept watching
            assert not watch.sub.closed
        finally:
            if watch is not None:
                watch.sub.close()
                if watch.task is not None:
                    await asyncio.wait_for(watch.task, 5)
            await nvr.stop(unregister=False)
            if nvr_b is not None:
                await nvr_b.stop()


async def test_reconnection_hangs_up_sessions_of_the_old_registration(
    settings: Settings,
) -> None:
    """Over TCP from the start: a reboot with a new connection ends the old dialog at once
    (listeners hear ``device-reconnected``) and the new INVITE travels the new connection."""
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    ended: list[str] = []
    async with rig(settings, settings.database_url) as r:
        server = r.sip.server
        server.add_session_listener(lambda s, reason: ended.append(reason))
        heard: list[tuple[str, str]] = []
        server.add_connect_listener(lambda d, reason: heard.append((d, reason)))
        cfg = nvr_config(settings, server.port, CH[:2])
        cfg.transport = "tcp"
        first = await boot(cfg)
        second: SimulatedNvr | None = None
        sub = None
        try:
            assert await first.register() == 200
            await answered(r, first, "V1.0.0", set(CH[:2]), 1)
            sub = r.hub.subscribe(CAM[1], "viewer")
            stream = r.hub._live[CAM[1]]
            await wait_until(lambda: stream.state == "receiving", 20, "first session")
            assert stream.session is not None
            old = stream.session.call_id
            await first.stop(unregister=False)  # power cut: no unregister, no BYE
            second = await boot(cfg)
            assert await second.register() == 200
            await wait_until(lambda: "device-reconnected" in ended, 10, "old session ended")
            await wait_until(lambda: len(heard) == 2, 10, "connect listeners told")
            assert heard == [(DEV, "register"), (DEV, "register-new-call-id")]
            await wait_until(
                lambda: (
                    stream.session is not None and stream.session.call_id in second.media.streams
                ),
                20,
                "INVITE on the new TCP connection",
            )
            assert stream.session is not None and stream.session.call_id != old
            invite = second.state.invites[-1]
            assert (invite.get("Subject") or "").startswith(f"{CH[1]}:0")
            assert server.registrations[DEV].peer.conn is not None
        finally:
            if sub is not None:
                sub.close()
            await first.stop(unregister=False)
            if second is not None:
                await second.stop()


async def test_keepalive_after_timeout_wakes_waiting_pulls(settings: Settings) -> None:
    """A device back from a keepalive timeout (no REGISTER) is no (re)connection for the
    queries, but the pulls waiting for it hear of it and INVITE it again at once."""
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    settings.sip.keepalive_interval_s = 0.3
    settings.sip.keepalive_misses = 2
    async with rig(settings, settings.database_url) as r:
        server = r.sip.server
        nvr = SimulatedNvr(nvr_config(settings, server.port, CH[:1], keepalive_interval_s=0.2))
        sub = None
        try:
            await nvr.start(wait=True)
            await answered(r, nvr, "V1.0.0", {CH[0]}, 1)
            sub = r.hub.subscribe(CAM[0], "viewer")
            stream = r.hub._live[CAM[0]]
            await wait_until(lambda: stream.state == "receiving", 20, "session")
            r.hub.retry_min_s = r.hub.retry_max_s = 120.0
            nvr.keepalive_enabled = False
            await wait_until(lambda: not server.registrations[DEV].online, 10, "keepalive timeout")
            await wait_until(lambda: stream.session is None, 10, "session ended")
            nvr.keepalive_enabled = True
            await wait_until(lambda: stream.state == "receiving", 20, "re-INVITE after keepalive")
            assert server.stats["connections"] == 1  # no REGISTER: no new queries
        finally:
            if sub is not None:
                sub.close()
            await nvr.stop()
