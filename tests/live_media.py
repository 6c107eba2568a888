"""Test helpers for the live view: real H.264 access units and a hub to feed them through."""

from __future__ import annotations

import fractions
import functools

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection

from sip.channel_ref import ChannelRef
from vms.live import ice
from vms.media.frames import AccessUnit, Gap, Subscription

WIDTH, HEIGHT, FPS = 320, 240, 25


@functools.lru_cache(maxsize=4)
def encoded_units(
    count: int = 50, gop: int = 25, profile: str = "baseline"
) -> tuple[tuple[bool, bytes], ...]:
    """``count`` frames of a moving pattern as Annex-B access units (keyframes carry SPS/PPS).

    Cameras mostly send Main/High profile without B-frames; ``profile`` picks which.
    """
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = WIDTH, HEIGHT
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.options = {
        "tune": "zerolatency",
        "preset": "ultrafast" if profile == "baseline" else "veryfast",
        "profile": profile.lower(),
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1:bframes=0",
    }
    units: list[tuple[bool, bytes]] = []
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    for i in range(count):
        rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        rgb[..., 0] = (xs + i * 4) % 256
        rgb[..., 1] = (ys + i * 2) % 256
        rgb[..., 2] = 128
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        units += [(bool(p.is_keyframe), bytes(p)) for p in codec.encode(frame)]
    units += [(bool(p.is_keyframe), bytes(p)) for p in codec.encode(None)]
    return tuple(units)


def access_unit(channel_id: str, index: int, units: tuple[tuple[bool, bytes], ...]) -> AccessUnit:
    """The ``index``-th frame of an endless loop over ``units`` with a steady 90 kHz clock."""
    keyframe, data = units[index % len(units)]
    return AccessUnit(channel_id, index * 90000 // FPS, keyframe, data)


class FakeHub:
    """The stream hub's consumer side (subscribe/publish) as agreed in hub_api.md, no device."""

    def __init__(self) -> None:
        self.subs: dict[ChannelRef, list[Subscription]] = {}
        self.subscribe_calls = 0
        self.keyframe_requests: list[ChannelRef] = []
        self.codecs: dict[ChannelRef, str] = {}

    def subscribe(
        self, channel: ChannelRef, name: str, maxlen: int = 256, *, audio: bool = False
    ) -> Subscription:
        assert isinstance(channel, ChannelRef), channel  # as the real hub insists
        self.subscribe_calls += 1
        sub = Subscription(
            channel.channel_id,
            name,
            maxlen,
            on_close=lambda s: self.subs.get(channel, []).remove(s),
            audio=audio,
        )
        self.subs.setdefault(channel, []).append(sub)
        return sub

    def publish(self, channel: ChannelRef, item: AccessUnit | Gap) -> None:
        for sub in tuple(self.subs.get(channel, ())):
            sub.offer(item)

    def stats(self, channel: ChannelRef) -> dict[str, object] | None:
        codec = self.codecs.get(channel)
        return None if codec is None else {"channel_id": channel.channel_id, "codec": codec}

    def request_keyframe(self, channel: ChannelRef) -> None:
        self.keyframe_requests.append(channel)

    def consumers(self, channel: ChannelRef) -> int:
        return len(self.subs.get(channel, ()))


DEVICE_ID = "34020000001320000001"
CHANNEL_ID = "34020000001310000001"
OTHER_CHANNEL_ID = "34020000001310000002"
OTHER_DEVICE_ID = "34020000001320000002"
CAMERA = ChannelRef(DEVICE_ID, CHANNEL_ID)
OTHER_CAMERA = ChannelRef(OTHER_DEVICE_ID, OTHER_CHANNEL_ID)
PASSWORD = "live-pass-123"


def seed_cameras(db: object) -> None:
    """County → two enterprises, each with one device and one camera, and a user per level.

    ``operator`` (county) sees both cameras; ``ent_a`` sees only CHANNEL_ID, ``ent_b`` only
    OTHER_CHANNEL_ID.
    """
    from storage.models import Channel, Device, OrgKind, Role, User
    from storage.org_tree import create_org
    from storage.passwords import hash_password

    with db.session() as s:  # type: ignore[attr-defined]
        province = create_org(s, "测试省", OrgKind.province, None, "340000")
        city = create_org(s, "测试市", OrgKind.city, province, "340100")
        county = create_org(s, "测试县", OrgKind.county, city, "340102")
        ent_a = create_org(s, "甲化工", OrgKind.enterprise, county, "913400001")
        ent_b = create_org(s, "乙加油站", OrgKind.gas_station, county, "913400002")
        pw = hash_password(PASSWORD)
        s.add(User(username="operator", password_hash=pw, role=Role.operator, org_id=county.id))
        s.add(User(username="ent_a", password_hash=pw, role=Role.enterprise, org_id=ent_a.id))
        s.add(User(username="ent_b", password_hash=pw, role=Role.enterprise, org_id=ent_b.id))
        for org, dev_id, ch_id, name in (
            (ent_a, DEVICE_ID, CHANNEL_ID, "罐区东 Tank east"),
            (ent_b, OTHER_DEVICE_ID, OTHER_CHANNEL_ID, "加油岛 Pump island"),
        ):
            device = Device(device_id=dev_id, name=f"NVR {org.name}", org_id=org.id, online=True)
            device.channels.append(Channel(channel_id=ch_id, name=name))
            device.channel_count = 1
            s.add(device)


async def login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    r = await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def make_offer() -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    with ice.host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    return pc


def ts_segment(units: tuple[tuple[bool, bytes], ...], frames: int) -> bytes:
    """``frames`` access units muxed (not re-encoded) into MPEG-TS, as the recorder stores them."""
    import io

    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as out:
        stream = out.add_stream("h264", rate=FPS)
        stream.width, stream.height = WIDTH, HEIGHT
        stream.time_base = fractions.Fraction(1, 90000)
        for i in range(frames):
            keyframe, data = units[i % len(units)]
            packet = av.Packet(data)
            packet.stream = stream
            packet.pts = packet.dts = i * 90000 // FPS
            packet.time_base = stream.time_base
            packet.is_keyframe = keyframe
            out.mux(packet)
    return buf.getvalue()
