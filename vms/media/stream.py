"""One pulled stream: its key, state, receive objects, counters and subscriptions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sip.channel_ref import ChannelRef
from sip.media_api import PlayMode, PlaySession

from .frames import AccessUnit, AudioUnit, Gap, Subscription
from .ps import PsDemuxer
from .receiver import RtpIngest
from .reorder import SequenceStats
from .stats import StreamStats


@dataclass(frozen=True)
class StreamKey:
    channel: ChannelRef  # the camera: its device and channel, never the channel id alone
    mode: PlayMode = PlayMode.live
    start: datetime | None = None
    end: datetime | None = None
    serial: int = 0  # tells apart two playbacks of the same range

    @property
    def channel_id(self) -> str:
        return self.channel.channel_id

    @property
    def device_id(self) -> str:
        return self.channel.device_id


@dataclass(eq=False)
class Stream:
    key: StreamKey
    subs: list[Subscription] = field(default_factory=list)
    stats: StreamStats = field(default_factory=StreamStats)
    state: str = "idle"  # idle, inviting, receiving, lost, closed
    port: int | None = None
    ssrc: str | None = None
    session: PlaySession | None = None
    ingest: RtpIngest | None = None
    demuxer: PsDemuxer | None = None
    task: asyncio.Task[None] | None = None
    idle_timer: asyncio.TimerHandle | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # re-INVITE now: device is back
    end_reason: str = ""
    ended_by_device: bool = False
    closing: bool = False
    attempts: int = 0
    last_error: str = ""
    sequence_done: SequenceStats = field(default_factory=SequenceStats)
    audio_packets: int = 0  # audio units received (delivered to the subscriptions taking audio)
    audio_codec: str | None = None
    retry_delays: list[float] = field(default_factory=list)
    codec: str | None = None
    receiver: Any = None  # the transport object while receiving
    invited_at: float = 0.0  # time.monotonic() of the 200 OK
    download_speed: int = 1  # a=downloadspeed of a Download INVITE
    paused: bool = False  # MANSRTSP PAUSE sent: no RTP is expected, so no receive timeout

    @property
    def device_id(self) -> str:
        return self.key.device_id

    async def wait_retry(self, delay: float) -> bool:
        """Wait ``delay`` before the next INVITE; True when ``wake`` (the device is back) cut
        it short."""
        try:
            await asyncio.wait_for(self.wake.wait(), delay)
        except TimeoutError:
            return False
        finally:
            self.wake.clear()
        return True

    async def control(
        self,
        sip: Any,
        *,
        scale: float | None = None,
        seek_s: float | None = None,
        pause: bool | None = None,
    ) -> None:
        """MANSRTSP INFO through ``sip`` (a ``PlayController``) for this playback.  While
        paused no RTP is expected: the receive timeout waits, and counts again from the
        command that resumes it (any PLAY)."""
        session = self.session
        if session is None or self.state != "receiving":
            raise LookupError("the playback is not running")
        was_paused = self.paused
        if pause:
            self.paused = True  # before the INFO: the device may stop at once
        try:
            await sip.control_playback(session, scale=scale, seek_s=seek_s, pause=pause)
        except BaseException:
            self.paused = was_paused
            raise
        if not pause and (pause is False or scale is not None or seek_s is not None):
            self.paused = False
        self.invited_at = time.monotonic()

    def deliver(self, item: AccessUnit | Gap | AudioUnit) -> None:
        """Fan one unit out; never blocks (each Subscription bounds itself)."""
        if item.__class__ is AudioUnit:
            self.audio_packets += 1
            self.audio_codec = item.codec.value  # type: ignore[union-attr]
            for sub in self.subs:
                sub.offer(item)
            return
        if isinstance(item, AccessUnit):
            self.stats.on_frame(item.keyframe, item.wallclock)
            self.codec = item.codec.value
        else:
            self.stats.gaps += 1
        for sub in self.subs:
            sub.offer(item)

    def sequence(self) -> SequenceStats:
        done = self.sequence_done
        live = self.ingest.sequence if self.ingest else SequenceStats()
        return SequenceStats(
            received=done.received + live.received,
            lost=done.lost + live.lost,
            duplicates=done.duplicates + live.duplicates,
            late=done.late + live.late,
            restarts=done.restarts + live.restarts,
        )

    def describe(self, transport: str) -> dict[str, Any]:
        """Statistics for the API: state, counters, rates, consumers."""
        now = time.monotonic()
        seq = self.sequence()
        demuxer = self.demuxer
        resolution = self.ingest.resolution if self.ingest else None
        if resolution is None and demuxer is not None:
            resolution = demuxer.resolution
        out: dict[str, Any] = {
            "channel_id": self.key.channel_id,
            "mode": self.key.mode.value,
            "state": self.state,
            "device_id": self.device_id,
            "transport": transport,
            "port": self.port,
            "ssrc": self.ssrc,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "codec": self.codec,
            "resolution": list(resolution) if resolution else None,
            "lost": seq.lost,
            "duplicates": seq.duplicates,
            "late": seq.late,
            "loss_pct": round(100 * seq.loss_ratio, 3),
            "audio_packets": self.audio_packets,
            "audio_codec": self.audio_codec,
            "consumers": [
                {"name": s.name, "pending": s.pending(), "dropped": s.dropped} for s in self.subs
            ],
        }
        out.update(self.stats.as_dict(now))
        return out
