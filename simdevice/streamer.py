"""The simulated NVR's media: a clip as MPEG-PS over RTP (PT 96, 90 kHz), real-time paced.

Optionally raw H.264 (RFC 6184, PT 98) instead, as some IPCs send when they answer
``a=rtpmap:98 H264/90000``.

Sinks: UDP datagrams, or RFC 4571 framing (2-byte length) over a TCP connection the
device opened (platform ``a=setup:passive``) or accepted (platform ``a=setup:active``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from rtp.h26x import h264_packets
from rtp.packetizer import PT_PS, packetize, rfc4571

from .ps_mux import mux_frame
from .video_source import Clip


class Sink:
    async def send(self, packets: list[bytes]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class UdpSink(Sink):
    def __init__(self, transport: asyncio.DatagramTransport, addr: tuple[str, int]) -> None:
        self.transport, self.addr = transport, addr

    @classmethod
    async def open(cls, host: str, port: int, local_host: str = "127.0.0.1") -> UdpSink:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(local_host, 0)
        )
        return cls(transport, (host, port))

    async def send(self, packets: list[bytes]) -> None:
        for p in packets:
            self.transport.sendto(p, self.addr)

    def close(self) -> None:
        self.transport.close()


class TcpSink(Sink):
    """RFC 4571: each RTP packet preceded by its 16-bit length."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 5.0) -> TcpSink:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(writer)

    async def send(self, packets: list[bytes]) -> None:
        self.writer.write(b"".join(rfc4571(p) for p in packets))
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


@dataclass
class StreamPlan:
    ssrc: int
    duration_s: float | None = None  # None → loop forever (live)
    speed: float = 1.0  # download speed / playback scale
    raw_h264: bool = False  # RFC 6184 H.264 instead of MPEG-PS


class RtpStreamer:
    """Sends ``clip`` frames to ``sink`` in real time until stopped or the plan's end."""

    def __init__(self, clip: Clip, sink: Sink, plan: StreamPlan) -> None:
        self.clip, self.sink, self.plan = clip, sink, plan
        self.packets_sent = 0
        self.frames_sent = 0
        self.paused = asyncio.Event()
        self.paused.set()  # set → running

    async def run(self, on_end: Callable[[], None] | None = None) -> None:
        clip, plan = self.clip, self.plan
        ticks = clip.frame_ticks
        total = None if plan.duration_s is None else max(1, int(plan.duration_s * clip.fps))
        seq, ts = 0, 0
        start = time.monotonic()
        n = 0
        try:
            while total is None or n < total:
                await self.paused.wait()
                frame = clip.frames[n % len(clip.frames)]
                if plan.raw_h264:
                    packets = h264_packets(frame.data, ts, plan.ssrc, seq)
                else:
                    ps = mux_frame(frame.data, ts, frame.keyframe)
                    packets = packetize([(ts, ps)], plan.ssrc, seq, PT_PS)
                await self.sink.send(packets)
                seq += len(packets)
                self.packets_sent += len(packets)
                self.frames_sent += 1
                n += 1
                ts += ticks
                due = start + n / (clip.fps * max(plan.speed, 0.01))
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1.0:  # fell far behind (paused or starved): rebase the clock
                    start = time.monotonic() - n / (clip.fps * max(plan.speed, 0.01))
        except (ConnectionError, OSError):
            return
        finally:
            self.sink.close()
        if on_end is not None:
            on_end()
