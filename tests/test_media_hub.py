"""Stream hub: fan-out, slow consumers, on-demand pull through a fake PlayController."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from rtp.packetizer import packetize, rfc4571
from sip.channel_ref import ChannelRef
from sip.media_api import (
    MediaAnswer,
    MediaOffer,
    MediaTransport,
    PlayError,
    PlayMode,
    PlayRequest,
    PlaySession,
)
from storage.models import Channel, Device
from vms.media.frames import AccessUnit, Gap, Subscription
from vms.media.hub import StreamHub
from vms.services import Services

from .media_support import encode_units, nvr_frame

DEVICE = "34020000001110000001"
CH = "34020000001320000001"
CAM = ChannelRef(DEVICE, CH)
UNKNOWN = ChannelRef(DEVICE, "34020000001329999999")


@pytest.fixture(scope="module")
def frames() -> list[tuple[int, bytes]]:
    """An NVR-style PS clip, one (pts, bytes) chunk per frame: 40 frames, GOP 10."""
    return [(pts, nvr_frame(data, pts, key)) for pts, key, data in encode_units(40, gop=10)]


class FakeNvr:
    """A PlayController that answers INVITEs and streams the clip to the offered port."""

    def __init__(self, frames: list[tuple[int, bytes]]) -> None:
        self.frames = frames
        self.plays: list[tuple[PlayRequest, MediaOffer]] = []
        self.stops: list[str] = []
        self.listeners: list = []
        self.fail_plays = 0
        self.answer_ssrc: str | None = None
        self.loop_clip = True
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.sessions: list[PlaySession] = []
        self._servers: list[asyncio.Server] = []

    def add_session_listener(self, listener) -> None:
        self.listeners.append(listener)

    async def play(self, request: PlayRequest, offer: MediaOffer) -> PlaySession:
        self.plays.append((request, offer))
        if self.fail_plays:
            self.fail_plays -= 1
            raise PlayError("486 Busy Here", 486)
        call_id = f"call-{len(self.plays)}"
        ssrc = self.answer_ssrc or offer.ssrc
        port = 0
        if offer.transport is MediaTransport.tcp_active:
            ready: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

            async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                await ready.put(w)

            server = await asyncio.start_server(accept, "127.0.0.1", 0)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self._tasks[call_id] = asyncio.create_task(self._send_tcp_active(ready, int(ssrc)))
        else:
            self._tasks[call_id] = asyncio.create_task(self._send(offer, int(ssrc)))
        answer = MediaAnswer("127.0.0.1", port, self.answer_ssrc, offer.transport)
        self.sessions.append(PlaySession(call_id, request, offer, answer, datetime.now(UTC)))
        return self.sessions[-1]

    async def stop(self, session: PlaySession) -> None:
        self.stops.append(session.call_id)
        task = self._tasks.pop(session.call_id, None)
        if task:
            task.cancel()

    async def bye(self, index: int = -1, reason: str = "BYE") -> None:
        """The device ends a session on its own."""
        call_id = list(self._tasks)[index]
        self._tasks.pop(call_id).cancel()
        session = next(s for s in self.sessions if s.call_id == call_id)
        for listener in self.listeners:
            result = listener(session, reason)
            if asyncio.iscoroutine(result):
                await result

    def _packets(self, ssrc: int, round_: int) -> list[bytes]:
        span = self.frames[-1][0] + 3600
        shifted = [(pts + round_ * span, data) for pts, data in self.frames]
        return packetize(shifted, ssrc, seq=round_ * 10000)

    async def _send(self, offer: MediaOffer, ssrc: int) -> None:
        if offer.transport is MediaTransport.tcp_passive:
            _, writer = await asyncio.open_connection("127.0.0.1", offer.port)
            return await self._send_tcp(writer, ssrc)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", offer.port)
        )
        try:
            for round_ in range(1000 if self.loop_clip else 1):
                for i, p in enumerate(self._packets(ssrc, round_)):
                    transport.sendto(p)
                    if i % 20 == 19:
                        await asyncio.sleep(0.005)
        finally:
            transport.close()

    async def _send_tcp(self, writer: asyncio.StreamWriter, ssrc: int) -> None:
        try:
            for round_ in range(1000 if self.loop_clip else 1):
                writer.write(b"".join(rfc4571(p) for p in self._packets(ssrc, round_)))
                await writer.drain()
                await asyncio.sleep(0.05)
        finally:
            writer.close()

    async def _send_tcp_active(self, ready: asyncio.Queue, ssrc: int) -> None:
        writer = await ready.get()
        await self._send_tcp(writer, ssrc)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for server in self._servers:
            server.close()


@pytest.fixture
async def hub(services: Services, frames: list[tuple[int, bytes]]):
    with services.db.session() as s:
        s.add(Device(device_id=DEVICE, channels=[Channel(channel_id=CH)]))
    media = services.settings.media
    media.idle_close_s = 0.2
    media.stream_timeout_s = 0.5
    media.rtp_port_min, media.rtp_port_max = 31000, 31999
    fake = FakeNvr(frames)
    services.sip = fake
    h = StreamHub(services)
    h.retry_min_s, h.retry_max_s = 0.05, 0.2
    await h.start()
    yield h, fake
    await h.stop()
    await fake.close()


async def take(sub: Subscription, n: int, timeout: float = 10.0) -> list[AccessUnit | Gap]:
    out: list[AccessUnit | Gap] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(await sub.get())
    return out


async def until(check, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def unit(i: int, key: bool) -> AccessUnit:
    return AccessUnit(CH, i * 3600, key, bytes([i % 256]) * 100)


async def test_fanout_and_slow_consumer(services: Services) -> None:
    hub = StreamHub(services)  # no SIP: units come through publish()
    await hub.start()
    fast = [hub.subscribe(CAM, f"fast{i}", maxlen=1000) for i in range(3)]
    slow = hub.subscribe(CAM, "slow", maxlen=8)
    sent = [unit(i, i % 10 == 0) for i in range(100)]
    for u in sent:
        hub.publish(CAM, u)
    for sub in fast:
        got = await take(sub, 100)
        assert got == sent
    assert slow.dropped > 0
    pending = [await slow.get() for _ in range(slow.pending())]
    assert any(isinstance(x, Gap) and x.reason == "slow-consumer" for x in pending)
    after_gap = [pending[i + 1] for i, x in enumerate(pending[:-1]) if isinstance(x, Gap)]
    assert all(isinstance(x, AccessUnit) and x.keyframe for x in after_gap)
    stats = hub.stats(CAM)
    assert stats is not None and stats["frames"] == 100 and stats["keyframes"] == 10
    assert {c["name"] for c in stats["consumers"]} == {"fast0", "fast1", "fast2", "slow"}
    assert hub.channels() == [CAM]
    await hub.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp-passive", "tcp-active"])
async def test_on_demand_pull_and_grace_bye(hub, transport: str) -> None:
    h, nvr = hub
    h.settings.transport = transport
    sub1 = h.subscribe(CAM, "viewer")
    got = await take(sub1, 15)
    assert isinstance(got[0], AccessUnit) and got[0].keyframe
    sub2 = h.subscribe(CAM, "recorder")
    await take(sub2, 5)
    assert len(nvr.plays) == 1
    request, offer = nvr.plays[0]
    assert (request.device_id, request.channel_id, request.mode) == (DEVICE, CH, PlayMode.live)
    assert offer.ssrc.startswith("020000") and 31000 <= offer.port <= 31999
    assert offer.transport.value == transport and offer.ip == h.settings.sdp_ip
    stats = h.stats(CAM)
    assert stats["state"] == "receiving" and stats["codec"] == "h264"
    assert stats["resolution"] == [320, 240] and stats["packets"] > 0
    assert len(stats["consumers"]) == 2
    sub1.close()
    sub2.close()
    # closed and re-opened within the grace period: no BYE, same session
    sub3 = h.subscribe(CAM, "viewer2")
    await asyncio.sleep(0.3)
    assert nvr.stops == [] and len(nvr.plays) == 1
    await take(sub3, 3)
    sub3.close()
    await until(lambda: nvr.stops == ["call-1"])
    await until(lambda: h.ports.in_use() == 0 and h.ssrcs.in_use() == 0)
    assert h.stats(CAM) is None and h.channels() == []


@pytest.mark.parametrize(
    ("transport", "reason"),
    [("udp", "no RTP"), ("tcp-passive", "no RTP"), ("tcp-active", "tcp connection closed")],
)
async def test_stream_lost_gap_event_and_reinvite(hub, transport: str, reason: str) -> None:
    h, nvr = hub
    h.settings.transport = transport
    nvr.loop_clip = False  # the device sends the clip once, then goes quiet
    async with h.services.events.subscribe() as events:
        sub = h.subscribe(CAM, "recorder", maxlen=1000)
        items: list[AccessUnit | Gap] = []
        async with asyncio.timeout(10):
            while not any(isinstance(x, Gap) and x.reason == "stream-lost" for x in items):
                items.append(await sub.get())
        event = await asyncio.wait_for(events.get(), 5)
        while event.kind != "stream.lost":
            event = await asyncio.wait_for(events.get(), 5)
        assert event.data["channel_id"] == CH and reason in event.data["reason"]
        await until(lambda: len(nvr.plays) >= 2)  # re-INVITE while someone subscribes
        assert "call-1" in nvr.stops  # the timed-out session was BYEd
        after = await take(sub, 2)
        assert isinstance(after[0], AccessUnit) and after[0].keyframe
    sub.close()


async def test_reinvite_backoff_after_failures_and_device_bye(hub) -> None:
    h, nvr = hub
    nvr.fail_plays = 3
    sub = h.subscribe(CAM, "viewer")
    await take(sub, 3)  # the fourth INVITE worked
    stream = h._live[CAM]
    assert stream.retry_delays == [0.05, 0.1, 0.2]
    assert len(nvr.plays) == 4 and h.stats(CAM)["attempts"] == 4
    await nvr.bye(reason="device BYE")
    items = []
    async with asyncio.timeout(10):
        while not any(isinstance(x, Gap) for x in items):
            items.append(await sub.get())
    await until(lambda: len(nvr.plays) == 5)
    assert "call-4" not in nvr.stops  # the device ended it: no BYE from us
    sub.close()


async def test_device_rekeyed_ssrc_is_accepted(hub) -> None:
    h, nvr = hub
    nvr.answer_ssrc = "0200009999"
    sub = h.subscribe(CAM, "viewer")
    got = await take(sub, 5)
    assert isinstance(got[0], AccessUnit)
    assert h.stats(CAM)["foreign_ssrc"] == 0
    sub.close()


async def test_unknown_channel_retries_without_crash(hub) -> None:
    h, nvr = hub
    sub = h.subscribe(UNKNOWN, "viewer")
    await until(lambda: h.stats(UNKNOWN)["attempts"] >= 2)
    assert nvr.plays == []
    assert "not in the database" in h.stats(UNKNOWN)["last_error"]
    sub.close()


async def test_playback_from_nvr(hub) -> None:
    h, nvr = hub
    nvr.loop_clip = False
    start = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    key, sub = h.open_playback(CAM, start, start + timedelta(minutes=5))
    got = await take(sub, 20)
    request, offer = nvr.plays[0]
    assert request.mode is PlayMode.playback and request.start == start
    assert offer.ssrc.startswith("120000")
    assert h.playback_stats(key)["mode"] == "Playback"
    live = h.subscribe(CAM, "live")  # a live pull of the same channel is a separate stream
    await until(lambda: len(nvr.plays) == 2)
    await nvr.bye(0, "MediaStatus 121")
    rest = []
    with contextlib.suppress(StopAsyncIteration):
        async with asyncio.timeout(10):
            async for item in sub:
                rest.append(item)
    units = [x for x in got + rest if isinstance(x, AccessUnit)]
    assert len(units) == 40 and units[0].keyframe  # the whole range, then the end
    assert h.playback_stats(key) is None and len(nvr.plays) == 2
    live.close()


async def test_streams_api_scoped_and_roles(hub) -> None:
    import httpx

    from api.app import create_app
    from api.security import create_token
    from storage.models import Organisation, OrgKind, Role, User

    h, nvr = hub
    services = h.services
    with services.db.session() as s:
        mine = Organisation(kind=OrgKind.enterprise, name="A", path="/1/")
        other = Organisation(kind=OrgKind.enterprise, name="B", path="/2/")
        s.add_all([mine, other])
        s.flush()
        mine.path, other.path = f"/{mine.id}/", f"/{other.id}/"
        s.scalar(select(Device).where(Device.device_id == DEVICE)).org_id = mine.id
        s.add(Device(device_id="34020000001110000002", org_id=other.id,
                     channels=[Channel(channel_id="34020000001320000002")]))  # fmt: skip
        users = {}
        for name, role, org in (
            ("admin", Role.admin, None),
            ("operator", Role.operator, mine.id),
            ("ent", Role.enterprise, mine.id),
            ("stranger", Role.operator, other.id),
        ):
            user = User(username=name, password_hash="x", role=role, org_id=org)
            s.add(user)
            s.flush()
            users[name] = (user.id, role.value)
    app = create_app(services)
    tokens = {n: create_token(app.state.jwt_secret, uid, r, 3600) for n, (uid, r) in users.items()}

    def auth(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[who]}"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get(f"/api/streams/{CH}", headers=auth("ent"))
        assert r.status_code == 200 and r.json()["state"] == "idle"
        r = await client.post(f"/api/streams/{CH}/start", headers=auth("ent"))
        assert r.status_code == 403
        r = await client.post(f"/api/streams/{CH}/start", headers=auth("stranger"))
        assert r.status_code == 404
        r = await client.post(f"/api/streams/{CH}/start", headers=auth("operator"))
        assert r.status_code == 200 and r.json()["changed"] is True
        await until(lambda: (h.stats(CAM) or {}).get("frames", 0) > 5)
        r = await client.get("/api/streams", headers=auth("admin"))
        assert [s["channel_id"] for s in r.json()] == [CH]
        body = r.json()[0]
        assert body["state"] == "receiving" and body["codec"] == "h264" and body["fps"] >= 0
        assert body["consumers"][0]["name"] == "api-hold"
        r = await client.get("/api/streams", headers=auth("stranger"))
        assert r.json() == []
        r = await client.get(f"/api/streams/{CH}", headers=auth("ent"))
        assert r.json()["packets"] > 0 and r.json()["resolution"] == [320, 240]
        r = await client.post(f"/api/streams/{CH}/stop", headers=auth("admin"))
        assert r.json()["changed"] is True
        await until(lambda: nvr.stops == ["call-1"])
        r = await client.get(f"/api/streams/{CH}", headers=auth("admin"))
        assert r.json()["state"] == "idle"
