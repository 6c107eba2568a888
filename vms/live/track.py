"""A video track that hands aiortc the camera's own H.264, never decoded.

aiortc's ``RTCRtpSender`` encodes what a track returns when it is a decoded
frame, but only packetizes (RFC 6184: single NAL, STAP-A, FU-A) when it is an
``av.Packet``.  So returning each access unit as a packet gives passthrough:
the bytes the camera sent are the bytes the browser decodes.
"""

from __future__ import annotations

import fractions
from collections.abc import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from vms.media.frames import AccessUnit, Codec, Gap, Subscription

VIDEO_CLOCK_RATE = 90000  # RFC 6184 §8.2.1: H.264 RTP timestamps run at 90 kHz
TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
MAX_STEP = 5 * VIDEO_CLOCK_RATE  # a larger (or backward) jump is a restart, not a pause
DEFAULT_STEP = VIDEO_CLOCK_RATE // 25  # one frame at 25 fps, used across such a jump


class PassthroughVideoTrack(MediaStreamTrack):
    """Reads a viewer's :class:`Subscription` and yields H.264 access units as packets.

    ``request_keyframe`` is called when the browser sends PLI/FIR: the camera's
    own keyframe interval answers it, and ``on_keyframe_request`` lets the node
    ask the device for an I-frame sooner where it can.
    """

    kind = "video"

    def __init__(
        self,
        subscription: Subscription,
        on_keyframe_request: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.subscription = subscription
        self.units = 0
        self.bytes = 0
        self.gaps = 0
        self.keyframe_requests = 0
        self._on_keyframe_request = on_keyframe_request
        self._last_in: int | None = None
        self._last_out = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        while True:
            try:
                item = await self.subscription.get()
            except StopAsyncIteration:
                self.stop()
                raise MediaStreamError from None
            if isinstance(item, Gap):
                self.gaps += 1
                continue
            if item.codec != Codec.h264:
                continue  # H.265 is not playable over WebRTC in browsers; skip it
            return self._packet(item)

    def _packet(self, unit: AccessUnit) -> av.Packet:
        packet = av.Packet(unit.data)
        packet.pts = self._rebase(unit.pts)
        packet.time_base = TIME_BASE
        self.units += 1
        self.bytes += len(unit.data)
        return packet

    def _rebase(self, pts: int) -> int:
        """This viewer's timestamps: from 0, always increasing, even when the device restarts
        its clock (a re-INVITE) — the browser's jitter buffer drops frames that go back."""
        if self._last_in is not None:
            step = pts - self._last_in
            self._last_out += step if 0 < step <= MAX_STEP else DEFAULT_STEP
        self._last_in = pts
        return self._last_out

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        if self._on_keyframe_request is not None:
            self._on_keyframe_request(self.subscription.channel_id)

    def stop(self) -> None:
        super().stop()
        self.subscription.close()
