"""Helpers for the media tests: ffmpeg-made clips, NVR-style PS, RTP senders, decoding."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
import struct
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from rtp.h26x import h264_payloads, h265_payloads, split_annexb
from rtp.packetizer import PT_H264, RTP_MTU, interleaved, packetize, packetize_payloads, rfc4571
from vms.media.frames import AccessUnit, Codec, Gap
from vms.media.packetizer import ps_frames
from vms.media.ps import PsDemuxer
from vms.media.receiver import RtpIngest
from vms.media.stats import StreamStats

SSRC = 200000001  # "0200000001"


def ffmpeg_ps(
    path: Path, seconds: float = 3.0, size: str = "640x360", codec: str = "libx264", gop: int = 25
) -> bytes:
    """An MPEG-2 PS file made by the ffmpeg binary from its moving test pattern."""
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
        "-t", str(seconds), "-c:v", codec, "-preset", "ultrafast", "-g", str(gop),
        "-bf", "0", "-pix_fmt", "yuv420p",
    ]  # fmt: skip
    if codec == "libx265":
        cmd += ["-x265-params", "log-level=error:bframes=0"]
    cmd += ["-f", "vob", str(path)]
    subprocess.run(cmd, check=True, timeout=60)
    return path.read_bytes()


def frame_digest(frame: av.VideoFrame) -> str:
    return hashlib.sha1(frame.to_ndarray(format="yuv420p").tobytes()).hexdigest()


@dataclass
class Reference:
    """ffmpeg's (PyAV's) own view of a PS file."""

    flags: list[bool]  # keyframe flag per packet
    pts: list[int]  # per packet
    digests: list[str]  # decoded pixels, in order
    by_pts: dict[int, str]


def reference(path: Path) -> Reference:
    flags: list[bool] = []
    pts: list[int] = []
    digests: list[str] = []
    by_pts: dict[int, str] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size:
                flags.append(packet.is_keyframe)
                pts.append(packet.pts)
            for frame in packet.decode():
                digests.append(frame_digest(frame))
                by_pts[frame.pts] = digests[-1]
    return Reference(flags, pts, digests, by_pts)


def check_segments(items: list[AccessUnit | Gap], ref: Reference) -> int:
    """Each run between gaps starts at a keyframe and decodes to ffmpeg's pixels; frames seen."""
    runs: list[list[AccessUnit]] = [[]]
    for item in items:
        if isinstance(item, Gap):
            runs.append([])
        else:
            runs[-1].append(item)
    seen = 0
    for run in runs:
        if not run:
            continue
        assert run[0].keyframe, "output after a gap must start at a keyframe"
        assert decode_units(run) == [ref.by_pts[u.pts] for u in run]
        seen += len(run)
    return seen


def decode_units(units: list[AccessUnit], codec: Codec = Codec.h264) -> list[str]:
    ctx = av.CodecContext.create("hevc" if codec is Codec.h265 else "h264", "r")
    digests = []
    for au in units:
        for frame in ctx.decode(av.Packet(au.data)):
            digests.append(frame_digest(frame))
    for frame in ctx.decode(None):
        digests.append(frame_digest(frame))
    return digests


def packets_of(ps: bytes, ssrc: int = SSRC, seq: int = 0) -> list[bytes]:
    return packetize(ps_frames(ps), ssrc, seq)


# --- NVR-style program stream --------------------------------------------------------


def pts_field(pts: int, prefix: int = 0x2) -> bytes:
    pts &= (1 << 33) - 1
    return bytes(
        [
            (prefix << 4) | ((pts >> 29) & 0x0E) | 1,
            (pts >> 22) & 0xFF,
            ((pts >> 14) & 0xFE) | 1,
            (pts >> 7) & 0xFF,
            ((pts << 1) & 0xFE) | 1,
        ]
    )


def pack_header(scr: int = 0, stuffing: int = 0) -> bytes:
    scr &= (1 << 33) - 1
    head = bytes(
        [
            0x44 | ((scr >> 27) & 0x38) | ((scr >> 28) & 3),
            (scr >> 20) & 0xFF,
            ((scr >> 12) & 0xF8) | 4 | ((scr >> 13) & 3),
            (scr >> 5) & 0xFF,
            ((scr << 3) & 0xF8) | 4,
            1, 0x01, 0x89, 0xC3,
            0xF8 | stuffing,
        ]
    )  # fmt: skip
    return b"\x00\x00\x01\xba" + head + b"\xff" * stuffing


def system_header() -> bytes:
    body = bytes([0x80, 0x01, 0x01, 0x04, 0xE1, 0xFF, 0xE0, 0xE0, 0x80, 0xC0, 0xC0, 0x08])
    return b"\x00\x00\x01\xbb" + struct.pack("!H", len(body)) + body


def psm(video_type: int = 0x1B, audio_type: int | None = 0x90, info_len_lie: int = 0) -> bytes:
    entries = bytes([video_type, 0xE0, 0, 0])
    if audio_type is not None:
        entries += bytes([audio_type, 0xC0, 0, 0])
    body = bytes([0xE0, 0xFF]) + struct.pack("!H", info_len_lie) + struct.pack("!H", len(entries))
    body += entries + b"\x00\x00\x00\x00"  # CRC (not checked by receivers)
    return b"\x00\x00\x01\xbc" + struct.pack("!H", len(body)) + body


def pes(stream_id: int, payload: bytes, pts: int | None) -> bytes:
    header = bytes([0x80, 0x80, 5]) + pts_field(pts) if pts is not None else bytes([0x80, 0, 0])
    return (
        b"\x00\x00\x01" + bytes([stream_id]) + struct.pack("!H", len(header) + len(payload))
        + header + payload
    )  # fmt: skip


def nvr_frame(
    data: bytes,
    pts: int,
    keyframe: bool,
    *,
    with_psm: bool = True,
    with_system_header: bool = True,
    stuffing: int = 0,
    max_pes: int = 65000,
    video_type: int = 0x1B,
    audio: bytes | None = None,
    private: bool = False,
) -> bytes:
    """One frame as an NVR muxes it: big frames in several PES, PTS on the first only."""
    out = [pack_header(pts, stuffing)]
    if keyframe:
        if with_system_header:
            out.append(system_header())
        if with_psm:
            out.append(psm(video_type))
    for i in range(0, len(data), max_pes):
        out.append(pes(0xE0, data[i : i + max_pes], pts if i == 0 else None))
    if private:
        out.append(b"\x00\x00\x01\xbd\x00\x04HIKV" + b"\x00\x00\x01\xbe\x00\x03\xff\xff\xff")
    if audio is not None:
        out.append(pes(0xC0, audio, pts))
    return b"".join(out)


def encode_units(
    n: int = 30, size: tuple[int, int] = (320, 240), codec: str = "libx264", gop: int = 10
) -> list[tuple[int, bool, bytes]]:
    """(pts, keyframe, Annex-B) access units from PyAV's encoder."""
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height = size
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, 25)
    enc.framerate = Fraction(25, 1)
    enc.gop_size = gop
    opts = {"preset": "ultrafast", "bf": "0"}
    if codec == "libx265":
        opts["x265-params"] = f"log-level=error:keyint={gop}:bframes=0:repeat-headers=1"
    else:
        opts["x264-params"] = f"keyint={gop}:repeat-headers=1"
    enc.options = opts
    out = []
    import numpy as np

    for i in range(n):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:, :, 0] = (np.arange(size[0]) + i * 7) % 256
        img[:, :, 1] = (np.arange(size[1])[:, None] * 3 + i) % 256
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for p in enc.encode(frame):
            out.append((p.pts * 3600, p.is_keyframe, bytes(p)))
    for p in enc.encode(None):
        out.append((p.pts * 3600, p.is_keyframe, bytes(p)))
    return out


# --- feeding and sending -----------------------------------------------------------------


class Collector:
    """A sink that keeps what the demuxer produced."""

    def __init__(self) -> None:
        self.units: list[AccessUnit] = []
        self.gaps: list[Gap] = []
        self.items: list[AccessUnit | Gap] = []
        self.changed = asyncio.Event()

    def __call__(self, item: object) -> None:
        if isinstance(item, AccessUnit):
            self.units.append(item)
            self.items.append(item)
        elif isinstance(item, Gap):
            self.gaps.append(item)
            self.items.append(item)
        self.changed.set()

    async def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.01)


async def settle(value: Callable[[], int], quiet_s: float = 0.3, timeout: float = 10.0) -> None:
    """Wait until a counter stops moving (the peer sent everything it will send)."""
    async with asyncio.timeout(timeout):
        last = -1
        while value() != last:
            last = value()
            await asyncio.sleep(quiet_s)


def make_ingest(
    ssrc: int = SSRC, reorder: bool = True, channel: str = "34020000001320000001"
) -> tuple[RtpIngest, Collector]:
    sink = Collector()
    return RtpIngest(PsDemuxer(channel), sink, ssrc, StreamStats(), reorder=reorder), sink


def impair(packets: list[bytes], loss: float, reorder: float, seed: int) -> list[bytes]:
    """Drop a share of packets and swap some neighbours (deterministic by seed)."""
    rng = random.Random(seed)
    kept = [p for p in packets if rng.random() >= loss]
    for i in range(len(kept) - 1):
        if rng.random() < reorder:
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return kept


async def send_udp(port: int, datagrams: list[bytes], burst: int = 50) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i, d in enumerate(datagrams):
            sock.sendto(d, ("127.0.0.1", port))
            if i % burst == burst - 1:
                await asyncio.sleep(0.002)
    finally:
        sock.close()


def tcp_stream(packets: list[bytes], framing: str = "rfc4571") -> bytes:
    frame = rfc4571 if framing == "rfc4571" else interleaved
    return b"".join(frame(p) for p in packets)


# --- raw H.264 / H.265 over RTP ------------------------------------------------------------


def h26x_rtp(
    units: list[tuple[int, bool, bytes]],
    codec: Codec = Codec.h264,
    ssrc: int = SSRC,
    seq: int = 0,
    payload_type: int = PT_H264,
    mtu: int = RTP_MTU,
) -> list[bytes]:
    """RFC 6184 / RFC 7798 RTP packets for encoder access units, one timestamp per frame."""
    pack = h264_payloads if codec is Codec.h264 else h265_payloads
    frames = [(pts, pack(list(split_annexb(data)), mtu)) for pts, _key, data in units]
    return packetize_payloads(frames, ssrc, seq, payload_type)


def decode_bytes(units: list[bytes], codec: Codec = Codec.h264) -> list[str]:
    """Pixel digests of the encoder's own packets (the reference for depacketized units)."""
    ctx = av.CodecContext.create("hevc" if codec is Codec.h265 else "h264", "r")
    digests = []
    for data in units:
        for frame in ctx.decode(av.Packet(data)):
            digests.append(frame_digest(frame))
    for frame in ctx.decode(None):
        digests.append(frame_digest(frame))
    return digests


@dataclass
class NvrRig:
    """A real SIP server, the stream hub and one simulated NVR whose catalog is in the DB."""

    hub: Any
    nvr: Any
    channels: list[str]  # the channel ids the NVR's catalog gave
    device_id: str = ""

    @property
    def cameras(self) -> list[Any]:
        """The channels as the hub, recorder and live view name them: (device, channel)."""
        from sip.channel_ref import ChannelRef

        return [ChannelRef(self.device_id, c) for c in self.channels]


@contextlib.asynccontextmanager
async def nvr_rig(
    services: Any, device_id: str, transport: str = "udp", **nvr: Any
) -> AsyncIterator[NvrRig]:
    from sqlalchemy import select

    from simdevice.nvr import NvrConfig, SimulatedNvr
    from storage.models import Channel
    from vms.media.hub import StreamHub
    from vms.sip_component import sip_component

    settings = services.settings
    settings.media.transport = transport
    settings.media.rtp_port_min, settings.media.rtp_port_max = 32000, 32999
    settings.media.idle_close_s = 0
    sip = sip_component(services)
    assert sip is not None
    await sip.start()
    hub = StreamHub(services)
    await hub.start()
    device = SimulatedNvr(
        NvrConfig(
            device_id=device_id,
            server_id=settings.sip.server_id,
            server_domain=settings.sip.domain,
            server_host="127.0.0.1",
            server_port=services.sip.port,
            password=settings.sip.password,
            **nvr,
        )
    )

    def channels() -> list[str]:
        with services.db.session() as s:
            return sorted(s.scalars(select(Channel.channel_id)))

    try:
        await device.start(wait=True)
        want = nvr.get("channels", 4)
        async with asyncio.timeout(10):
            while len(channels()) < want:  # the catalog on register fills the DB
                await asyncio.sleep(0.05)
        yield NvrRig(hub, device, channels(), device_id)
    finally:
        await hub.stop()
        await device.stop()
        await sip.stop()


async def collect_units(sub: Any, count: int, timeout: float = 15) -> list[AccessUnit]:
    """The next ``count`` access units of a subscription (gaps skipped)."""
    units: list[AccessUnit] = []
    async with asyncio.timeout(timeout):
        while len(units) < count:
            item = await sub.get()
            if isinstance(item, AccessUnit):
                units.append(item)
    return units


def ps_clip(tmp_path_factory: pytest.TempPathFactory, name: str) -> tuple[list[bytes], Reference]:
    """A 4 s 640x360 PS clip (GOP 1 s) as RTP packets, with ffmpeg's reading of it."""
    path = tmp_path_factory.mktemp(name) / "clip.ps"
    ps = ffmpeg_ps(path, seconds=4, size="640x360", gop=25)
    return packets_of(ps), reference(path)
