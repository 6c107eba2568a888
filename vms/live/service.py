"""The live-view component: WebRTC peers that forward hub streams to browsers.

Signalling is one HTTP round trip (non-trickle ICE): the browser posts an offer
with its candidates gathered, we answer with ours.  Every peer connection is
owned here and closed on hang-up, on ICE failure, on a connect timeout and at
stop, so no socket outlives its viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from sip.channel_ref import ChannelRef
from vms.config import LiveSettings
from vms.logging import get_logger
from vms.media.frames import Codec, Subscription
from vms.services import Services

from . import ice
from .audio import add_audio, camera_audio, offers_audio
from .relay import RelayPool
from .track import PassthroughVideoTrack

log = get_logger("vms.live")

MAX_OFFER_BYTES = 64 * 1024
KEYFRAME_REQUEST_MIN_INTERVAL_S = 1.0
JANITOR_INTERVAL_S = 2.0


class LiveError(Exception):
    """A viewer's request cannot be served; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class LiveSession:
    id: str
    channel: ChannelRef
    user: str
    pc: RTCPeerConnection
    track: PassthroughVideoTrack
    answer_sdp: str = ""
    created: float = field(default_factory=time.monotonic)
    audio: Any = None  # the PassthroughAudioTrack of a G.711 camera, when the offer took audio

    @property
    def channel_id(self) -> str:
        return self.channel.channel_id

    def stats(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "device_id": self.channel.device_id,
            "channel_id": self.channel_id,
            "user": self.user,
            "state": self.pc.connectionState,
            "age_s": round(time.monotonic() - self.created, 1),
            "units": self.track.units,
            "bytes": self.track.bytes,
            "gaps": self.track.gaps,
            "keyframe_requests": self.track.keyframe_requests,
            "audio": (self.audio.codec or "pending") if self.audio is not None else None,
            "audio_units": self.audio.units if self.audio is not None else 0,
        }


def h264_preferences() -> list[Any]:
    """aiortc's H.264 capabilities (plus RTX): the only codec we can send without re-encoding."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    h264 = [c for c in codecs if c.mimeType.lower() == "video/h264"]
    rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
    return h264 + rtx


class LiveService:
    """Owns the peers and the per-channel relays; ``answer`` is the signalling entry point."""

    name = "live"

    def __init__(self, services: Services, settings: LiveSettings) -> None:
        self.services = services
        self.settings = settings
        self.sessions: dict[str, LiveSession] = {}
        self.relays = RelayPool(lambda: services.media, settings.viewer_queue, settings.audio)
        self._last_keyframe_request: dict[ChannelRef, float] = {}
        self._janitor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ice.install()
        self._janitor = asyncio.create_task(self._sweep_forever(), name="live-janitor")

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
            self._janitor = None
        for session_id in list(self.sessions):
            await self.hangup(session_id)
        await self.relays.close()

    def _configuration(self) -> RTCConfiguration:
        servers = [RTCIceServer(url) for url in self.settings.stun_urls]
        return RTCConfiguration(iceServers=servers)

    async def answer(
        self,
        channel: ChannelRef,
        offer_sdp: str,
        user: str = "",
        source: Subscription | None = None,
    ) -> LiveSession:
        """Answer a browser's offer for a camera; the answer carries all our candidates.

        ``source`` (an NVR playback's units) takes the place of the channel's live relay."""
        if len(offer_sdp.encode()) > MAX_OFFER_BYTES:
            raise LiveError(413, "SDP offer too large")
        if "m=video" not in offer_sdp:
            raise LiveError(400, "the offer has no video section (add a recvonly transceiver)")
        if len(self.sessions) >= self.settings.max_sessions:
            limit = self.settings.max_sessions
            raise LiveError(503, f"live view is at its limit of {limit} viewers")
        mine = sum(1 for x in self.sessions.values() if x.user == user)
        if user and mine >= self.settings.max_sessions_per_user:
            limit = self.settings.max_sessions_per_user
            raise LiveError(429, f"{user} already watches {limit} cameras (close some tiles)")
        session_id = uuid.uuid4().hex
        if source is None:
            self._check_codec(channel)
            try:
                subscription = self.relays.attach(channel, f"viewer:{session_id[:8]}")
            except LookupError as exc:
                raise LiveError(503, str(exc)) from None
            self._request_keyframe(channel)  # a new viewer need not wait out a long GOP
        else:
            subscription = source
        track = PassthroughVideoTrack(subscription, lambda _label: self._request_keyframe(channel))
        pc = RTCPeerConnection(self._configuration())
        session = LiveSession(session_id, channel, user, pc, track)
        self.sessions[session_id] = session
        try:
            sender = pc.addTrack(track)
            # PLI/FIR from the browser: nothing to re-encode, so forward the wish instead.
            sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]
            transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
            transceiver.setCodecPreferences(h264_preferences())
            if source is None and self.settings.audio and offers_audio(offer_sdp):
                known = camera_audio(self.services.media, channel)
                name = f"viewer-audio:{session_id[:8]}"
                session.audio = add_audio(pc, self.relays, channel, name, known)
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            answer = await pc.createAnswer()
            with ice.host_addresses(self.settings.ice_addresses):
                await pc.setLocalDescription(answer)
        except Exception as exc:  # noqa: BLE001 - any SDP/negotiation failure is the offer's fault
            await self.hangup(session_id)
            raise LiveError(400, f"cannot answer this offer: {exc}") from None

        @pc.on("connectionstatechange")
        async def _state() -> None:
            log.info("live peer", session_id=session_id, state=pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.hangup(session_id)

        session.answer_sdp = pc.localDescription.sdp
        log.info("live session", session_id=session_id, channel=str(channel), user=user)
        return session

    def _check_codec(self, channel: ChannelRef) -> None:
        """Refuse early when the hub already knows the camera sends H.265 (no browser plays it
        over WebRTC, and we do not transcode)."""
        media = self.services.media
        info = None if media is None else media.stats(channel)
        if isinstance(info, dict) and info.get("codec") == Codec.h265:
            raise LiveError(415, "this camera sends H.265, which browsers cannot play over WebRTC")

    async def hangup(self, session_id: str) -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        session.track.stop()
        if session.audio is not None:
            session.audio.stop()
        await session.pc.close()
        await self.relays.release_idle()
        log.info("live session closed", session_id=session_id, units=session.track.units)
        return True

    def _request_keyframe(self, channel: ChannelRef) -> None:
        now = time.monotonic()
        if now - self._last_keyframe_request.get(channel, 0.0) < KEYFRAME_REQUEST_MIN_INTERVAL_S:
            return
        self._last_keyframe_request[channel] = now
        media = self.services.media
        if media is not None:
            try:
                media.request_keyframe(channel)
            except Exception as exc:  # noqa: BLE001 - a keyframe wish must never break a peer
                log.warning("keyframe request failed", channel=str(channel), error=repr(exc))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(JANITOR_INTERVAL_S)
            await self.sweep()

    async def sweep(self) -> None:
        """Close peers that never connected in time or whose stream ended."""
        now = time.monotonic()
        for session in list(self.sessions.values()):
            state = session.pc.connectionState
            late = state != "connected" and now - session.created > self.settings.connect_timeout_s
            if late or session.track.readyState == "ended" or state in ("failed", "closed"):
                await self.hangup(session.id)

    def stats(self) -> dict[str, Any]:
        return {
            "sessions": [s.stats() for s in self.sessions.values()],
            "relays": self.relays.stats(),
        }


def create_live(services: Services) -> LiveService | None:
    """Component factory: the live view, registered as ``services.live``."""
    settings: LiveSettings = services.settings.live
    if not settings.enabled:
        return None
    service = LiveService(services, settings)
    services.live = service
    return service
