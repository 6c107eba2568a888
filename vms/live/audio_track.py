"""An audio track that hands aiortc the camera's G.711 bytes, never decoded.

As for video (``track.py``), aiortc only packetizes what a track returns as an
``av.Packet``: its PCMA/PCMU encoder's ``pack`` puts the bytes in an RTP packet as
they are.  The camera's frames (often 40 ms or more) are cut into 20 ms packets, the
ptime browsers expect, which is a split of the sample bytes, not a re-encode.  AAC
has no WebRTC payload format, so an AAC camera's audio is not sent (``vms.live.audio``
leaves the audio section inactive rather than transcode on the live path).

A track made before the camera's codec was known (``codec=None``) was answered with both
PCMA and PCMU; its first G.711 unit decides, and the sender's codec (the first of
``negotiated``, which aiortc packetizes with from the first packet on) is set to it.
"""

from __future__ import annotations

import fractions
from collections import deque

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from vms.media.frames import AudioCodec, AudioUnit, Gap, Subscription

G711_RATE = 8000
TIME_BASE = fractions.Fraction(1, G711_RATE)
PACKET_SAMPLES = 160  # 20 ms: the default ptime of RFC 3551 for PCMA/PCMU
MAX_JUMP = 5 * 90000  # a larger (or backward) PTS step is a restart, not a pause
MIME = {AudioCodec.pcma: "audio/PCMA", AudioCodec.pcmu: "audio/PCMU"}


class PassthroughAudioTrack(MediaStreamTrack):
    """Reads an audio-only :class:`Subscription`; yields the camera's G.711 as packets."""

    kind = "audio"

    def __init__(self, subscription: Subscription, codec: AudioCodec | None) -> None:
        super().__init__()
        if codec is not None and codec not in MIME:
            raise ValueError(f"{codec} cannot be sent over WebRTC without re-encoding")
        self.subscription = subscription
        self.codec = codec  # None: the first G.711 unit decides
        self.negotiated: list[RTCRtpCodecParameters] | None = None  # the sender's, first used
        self.units = 0
        self.bytes = 0
        self.gaps = 0
        self.mismatched = 0  # units of another codec (the camera changed it): not sent
        self._pending: deque[av.Packet] = deque()
        self._in_end: int | None = None  # 90 kHz end of the last unit taken
        self._out = 0  # next RTP timestamp (samples) on our side

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        while not self._pending:
            try:
                item = await self.subscription.get()
            except StopAsyncIteration:
                self.stop()
                raise MediaStreamError from None
            if isinstance(item, Gap):
                self.gaps += 1
                self._in_end = None
            elif isinstance(item, AudioUnit):
                if self.codec is None and item.codec in MIME:
                    self._choose(item.codec)
                if item.codec is not self.codec:
                    self.mismatched += 1
                    continue
                self._take(item)
        return self._pending.popleft()

    def _choose(self, codec: AudioCodec) -> None:
        """Make ``codec`` the sender's: aiortc sends with the first negotiated codec and makes
        its packetizer at the first packet, which this call comes before."""
        self.codec = codec
        mime = MIME[codec].lower()
        chosen = next((c for c in self.negotiated or [] if c.mimeType.lower() == mime), None)
        first = (self.negotiated or [None])[0]
        if chosen is not None and first is not None and chosen is not first:
            first.mimeType, first.clockRate = chosen.mimeType, chosen.clockRate
            first.payloadType, first.channels = chosen.payloadType, chosen.channels

    def _take(self, unit: AudioUnit) -> None:
        """Cut one unit into 20 ms packets on a timeline that only moves forward: a hole in
        the camera's audio moves it on by the hole, a restart of its clock does not."""
        if self._in_end is not None:
            step = unit.pts - self._in_end
            if 0 < step <= MAX_JUMP:
                self._out += step * G711_RATE // 90000
        self._in_end = unit.pts + len(unit.data) * 90000 // G711_RATE
        data = unit.data
        for i in range(0, len(data), PACKET_SAMPLES):
            packet = av.Packet(data[i : i + PACKET_SAMPLES])
            packet.pts = self._out
            packet.time_base = TIME_BASE
            self._out += packet.size
            self._pending.append(packet)
        self.units += 1
        self.bytes += len(data)

    def stop(self) -> None:
        super().stop()
        self.subscription.close()
