"""Helpers for the recording tests: a real H.264 clip cut into access units, the stream
hub, and a seeded organisation/device/channel/user."""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import httpx

from api.app import create_app
from api.security import create_token
from sip.channel_ref import ChannelRef
from storage.models import Channel, Device, Organisation, OrgKind, Role, User
from vms.media.frames import AccessUnit
from vms.media.hub import StreamHub
from vms.services import Services

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
FPS = 25
TICKS = 90000 // FPS


@dataclass(frozen=True)
class Clip:
    units: list[tuple[int, bool, bytes]]  # (pts, keyframe, Annex-B data)
    checksums: list[str]  # md5 of each decoded source frame, in order

    def access_units(self, channel_id: str, wall0: float, pts0: int = 0) -> list[AccessUnit]:
        return [
            AccessUnit(channel_id, pts0 + pts, key, data, wallclock=wall0 + pts / 90000)
            for pts, key, data in self.units
        ]


def frame_md5(frame: av.VideoFrame) -> str:
    return hashlib.md5(frame.to_ndarray(format="yuv420p").tobytes()).hexdigest()


def decode_md5s(data: bytes, fmt: str | None = None) -> list[str]:
    with av.open(io.BytesIO(data), format=fmt) as c:
        return [frame_md5(f) for f in c.decode(video=0)]


@functools.lru_cache(maxsize=4)
def encode_clip(frames: int = 250, gop: int = 25, size: tuple[int, int] = (320, 240)) -> Clip:
    """A few seconds of the real pedestrian clip as x264 Annex-B units, SPS/PPS on keyframes,
    no B-frames (as GB28181 cameras send), 90 kHz PTS from 0."""
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = size[0], size[1], "yuv420p"
    enc.time_base = Fraction(1, 90000)
    enc.options = {
        "bf": "0",
        "g": str(gop),
        "keyint_min": str(gop),
        "sc_threshold": "0",
        "preset": "ultrafast",
        "x264-params": "repeat-headers=1",
    }
    units: list[tuple[int, bool, bytes]] = []
    with av.open(str(VTEST)) as src:
        for i, frame in enumerate(src.decode(video=0)):
            if i >= frames:
                break
            f = frame.reformat(size[0], size[1], "yuv420p")
            f.pts, f.time_base = i * TICKS, Fraction(1, 90000)
            units += [(p.pts, p.is_keyframe, bytes(p)) for p in enc.encode(f)]
    units += [(p.pts, p.is_keyframe, bytes(p)) for p in enc.encode(None)]
    units.sort()
    checksums = decode_md5s(b"".join(d for _, _, d in units), "h264")
    assert len(checksums) == frames
    return Clip(units, checksums)


async def start_hub(services: Services) -> StreamHub:
    """The media engineer's real hub; with no SIP server it takes units through publish()."""
    hub = StreamHub(services)
    await hub.start()
    return hub


def device_of(org_id: int) -> str:
    """The device :func:`seed` creates for an organisation."""
    return f"3401000000118{org_id:07d}"


def camera(org_id: int, channel_id: str) -> ChannelRef:
    """A camera :func:`seed` created: the organisation's device and the channel."""
    return ChannelRef(device_of(org_id), channel_id)


def seed(services: Services, channel_ids: list[str], org_name: str = "Plant A") -> tuple[int, str]:
    """An enterprise with one online device holding the channels, and an enterprise user.

    Returns (org id, bearer token of that user)."""
    with services.db.session() as s:
        org = Organisation(kind=OrgKind.enterprise, name=org_name, code="")
        s.add(org)
        s.flush()
        org.path = f"/{org.id}/"
        device = Device(device_id=device_of(org.id), org_id=org.id, online=True)
        device.channels = [Channel(channel_id=c) for c in channel_ids]
        user = User(
            username=f"user{org.id}", password_hash="x", role=Role.enterprise, org_id=org.id
        )
        s.add_all([device, user])
        s.flush()
        secret = services.settings.auth.jwt_secret
        return org.id, create_token(secret, user.id, user.role.value, 3600)


def client(services: Services, token: str) -> httpx.AsyncClient:
    """An API client on the app in-process, as the given user."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
