"""The narrow interface between signalling (``sip/``) and media (``vms/media``).

The media layer owns receive ports and SSRCs; it hands a :class:`MediaOffer`
to the SIP server, which INVITEs the device and returns a :class:`PlaySession`
holding the device's :class:`MediaAnswer`.  The SIP server tells its session
listeners when a device ends a session (BYE, MediaStatus 121, timeout, re-registration),
and its connect listeners when a device (re)connects, so wanted streams are re-INVITEd.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class PlayMode(enum.StrEnum):
    """SDP ``s=`` line of the INVITE."""

    live = "Play"
    playback = "Playback"
    download = "Download"

    @classmethod
    def parse(cls, value: PlayMode | str) -> PlayMode:
        """A mode from its ``s=`` value or its name, any case ("Playback", "playback", "live")."""
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        for mode in cls:
            if text in (mode.value.lower(), mode.name):
                return mode
        raise ValueError(f"unknown play mode {value!r}: use Play, Playback or Download")


class MediaTransport(enum.StrEnum):
    udp = "udp"
    tcp_passive = "tcp-passive"  # we listen, the device connects (SDP a=setup:passive)
    tcp_active = "tcp-active"  # we connect to the device (SDP a=setup:active)


@dataclass(frozen=True)
class PlayRequest:
    device_id: str
    channel_id: str
    mode: PlayMode = PlayMode.live
    start: datetime | None = None  # playback/download range
    end: datetime | None = None
    download_speed: int = 1
    stream_number: int = 0  # 0 main stream, 1 sub stream

    def __post_init__(self) -> None:
        # a caller passing "playback" must still get s=Playback, never a live INVITE
        object.__setattr__(self, "mode", PlayMode.parse(self.mode))


@dataclass(frozen=True)
class MediaOffer:
    """Where the device should send RTP: our reachable IP, port and SSRC."""

    ip: str
    port: int
    ssrc: str  # 10 decimal digits: 0… live, 1… history
    transport: MediaTransport = MediaTransport.udp


@dataclass(frozen=True)
class MediaAnswer:
    """What the device answered in its 200 OK SDP."""

    ip: str
    port: int
    ssrc: str | None  # None when the device sent no y= line (keep ours)
    transport: MediaTransport
    file_size: int | None = None  # a=filesize for downloads
    # a=rtpmap of the answer: payload type → encoding name ("PS", "H264", "H265")
    payload_types: dict[int, str] = field(default_factory=dict, hash=False)


@dataclass
class PlaySession:
    call_id: str
    request: PlayRequest
    offer: MediaOffer
    answer: MediaAnswer
    started_at: datetime
    extra: dict[str, str] = field(default_factory=dict)


SessionEndListener = Callable[[PlaySession, str], Awaitable[None] | None]
# (device id, reason): the device (re)connected — a REGISTER that started a new registration,
# or a keepalive after it was marked offline; pulls waiting to re-INVITE it may go now
DeviceConnectListener = Callable[[str, str], Awaitable[None] | None]


class PlayError(Exception):
    """The device refused or did not answer the INVITE (status code when known)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PlayController(Protocol):
    """Implemented by the SIP server; used by the media hub for on-demand pulls."""

    async def play(self, request: PlayRequest, offer: MediaOffer) -> PlaySession: ...

    async def stop(self, session: PlaySession) -> None: ...

    async def control_playback(
        self,
        session: PlaySession,
        *,
        scale: float | None = None,
        seek_s: float | None = None,
        pause: bool | None = None,
    ) -> None: ...

    def add_session_listener(self, listener: SessionEndListener) -> None: ...

    def add_connect_listener(self, listener: DeviceConnectListener) -> None: ...
